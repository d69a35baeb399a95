-- Items that could not be archived, by mailbox or drive, stage and reason, newest first.
-- A 'failed' item is retried by the next run. For a 'skipped' item, the reason
-- column gives why it was not kept. coverage_gaps.sql leaves out the failures that a
-- later run closed.
--
-- Columns: workload, location (mailbox, or OneDrive owner / site and library), stage,
-- outcome, reason, items, last_seen.
SELECT
    f.workload,
    coalesce(
        b.user_principal_name,
        coalesce(s.display_name, d.owner_name, d.owner_id) || ' / ' || d.name,
        coalesce(f.mailbox_id, f.container_id)
    ) AS location,
    f.stage,
    f.outcome,
    f.reason,
    count(*) AS items,
    max(f.captured_at) AS last_seen
FROM failures AS f
LEFT JOIN mailboxes AS b USING (mailbox_id)
LEFT JOIN drives AS d ON f.workload = 'files' AND d.drive_id = f.container_id
LEFT JOIN sites AS s ON s.site_id = d.site_id
GROUP BY ALL
ORDER BY last_seen DESC;
