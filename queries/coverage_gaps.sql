-- Items the archive has not captured since their last failure: the open coverage gaps,
-- per workload (mail, files, calendar, contacts, teams), location, outcome and reason.
--
-- Columns: workload, location (mailbox, OneDrive owner / site library, or team),
-- outcome, reason, items, first_failed, last_failed.
--
-- A 'failed' item is retried by the next run of its mailbox or drive. Its gap closes once
-- a version of the item with content is archived after the failure. A skipped file still
-- gets a metadata row without content, which does not close the gap. A 'skipped' item (a OneNote
-- package, a file over the size limit, malware) stays a gap, with the reason saying why.
-- failures_by_reason.sql lists every failure, closed gaps included.
--
-- To adapt: drop the GROUP BY and select f.item_id and f.detail to list the items, or
-- add `AND f.outcome = 'failed'` to see only what the next run will retry.
WITH latest_failure AS (
    SELECT *
    FROM failures
    WHERE item_id IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY workload, coalesce(mailbox_id, container_id), item_id
        ORDER BY captured_at DESC
    ) = 1
),
archived AS (
    SELECT 'mail' AS workload, mailbox_id AS container, message_id AS item_id,
        max(captured_at) AS last_archived
    FROM messages_rows
    WHERE mime_sha256 IS NOT NULL
    GROUP BY ALL
    UNION ALL
    SELECT 'files', drive_id, item_id, max(captured_at)
    FROM drive_items_rows
    WHERE content_sha256 IS NOT NULL
    GROUP BY ALL
    UNION ALL
    SELECT 'calendar', mailbox_id, event_id, max(captured_at)
    FROM events_rows
    WHERE change <> 'deleted'
    GROUP BY ALL
    UNION ALL
    SELECT 'contacts', mailbox_id, contact_id, max(captured_at)
    FROM contacts_rows
    WHERE change <> 'deleted'
    GROUP BY ALL
    UNION ALL
    -- Teams failures name the team, not the channel, as their container.
    SELECT 'teams', team_id, message_id, max(captured_at)
    FROM channel_messages_rows
    WHERE change <> 'deleted'
    GROUP BY ALL
)
SELECT
    f.workload,
    coalesce(
        b.user_principal_name,
        coalesce(s.display_name, d.owner_name, d.owner_id) || ' / ' || d.name,
        t.display_name,
        coalesce(f.mailbox_id, f.container_id)
    ) AS location,
    f.outcome,
    f.reason,
    count(*) AS items,
    min(f.captured_at) AS first_failed,
    max(f.captured_at) AS last_failed
FROM latest_failure AS f
LEFT JOIN archived AS a ON a.workload = f.workload
    AND a.container = coalesce(f.mailbox_id, f.container_id)
    AND a.item_id = f.item_id
LEFT JOIN mailboxes AS b ON b.mailbox_id = f.mailbox_id
LEFT JOIN drives AS d ON f.workload = 'files' AND d.drive_id = f.container_id
LEFT JOIN sites AS s ON s.site_id = d.site_id
LEFT JOIN (
    SELECT team_id, display_name
    FROM teams_rows
    QUALIFY row_number() OVER (PARTITION BY team_id ORDER BY captured_at DESC) = 1
) AS t ON f.workload = 'teams' AND t.team_id = f.container_id
WHERE a.last_archived IS NULL OR a.last_archived < f.captured_at
GROUP BY ALL
ORDER BY last_failed DESC, location;
