-- Items that could not be archived, by mailbox, stage and reason, newest first.
-- A 'failed' item is retried by the next run. For a 'skipped' item, the reason
-- column gives why it was not kept.
SELECT
    b.user_principal_name AS mailbox,
    f.stage,
    f.outcome,
    f.reason,
    count(*) AS items,
    max(f.captured_at) AS last_seen
FROM failures AS f
LEFT JOIN mailboxes AS b USING (mailbox_id)
GROUP BY ALL
ORDER BY last_seen DESC;
