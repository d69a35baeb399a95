-- What the archive contains per workload: mail, files, calendar, contacts and teams.
--
-- Columns: workload, containers (mailboxes, drives or Teams channels with at least one
-- archived item), live_items (items whose newest archived version is not a deletion),
-- deleted_in_tenant (items the tenant deleted that the archive still has), versions
-- (archived versions, deletions left out), version_bytes (the sizes of those versions:
-- MIME size for mail, file size for files, Graph JSON size for the others),
-- first_captured and last_captured.
--
-- A workload with nothing archived still gets a row, with zero counts, so a missing
-- backup shows up. Folders of drives are left out of files.
--
-- To adapt: add container_id to the final GROUP BY to see the same figures per mailbox,
-- drive or channel.
WITH versions AS (
    SELECT 'mail' AS workload, mailbox_id AS container_id, message_id AS item_id,
        change, captured_at, size, commit_seq, file_index, row_index
    FROM messages_rows
    UNION ALL
    SELECT 'files', drive_id, item_id, change, captured_at, size, commit_seq, file_index,
        row_index
    FROM drive_items_rows
    WHERE NOT coalesce(is_folder, false)
    UNION ALL
    SELECT 'calendar', mailbox_id, event_id, change, captured_at, size, commit_seq,
        file_index, row_index
    FROM events_rows
    UNION ALL
    SELECT 'contacts', mailbox_id, contact_id, change, captured_at, size, commit_seq,
        file_index, row_index
    FROM contacts_rows
    UNION ALL
    SELECT 'teams', channel_id, message_id, change, captured_at, size, commit_seq,
        file_index, row_index
    FROM channel_messages_rows
),
newest AS (
    SELECT workload, container_id, item_id, change
    FROM versions
    QUALIFY row_number() OVER (
        PARTITION BY workload, container_id, item_id
        ORDER BY captured_at DESC, commit_seq DESC, file_index DESC, row_index DESC
    ) = 1
),
items AS (
    SELECT
        workload,
        count(DISTINCT container_id) AS containers,
        count(*) FILTER (WHERE change <> 'deleted') AS live_items,
        count(*) FILTER (WHERE change = 'deleted') AS deleted_in_tenant
    FROM newest
    GROUP BY workload
),
kept AS (
    SELECT
        workload,
        count(*) AS versions,
        coalesce(sum(size), 0) AS version_bytes,
        min(captured_at) AS first_captured,
        max(captured_at) AS last_captured
    FROM versions
    WHERE change <> 'deleted'
    GROUP BY workload
)
SELECT
    w.workload,
    coalesce(i.containers, 0) AS containers,
    coalesce(i.live_items, 0) AS live_items,
    coalesce(i.deleted_in_tenant, 0) AS deleted_in_tenant,
    coalesce(k.versions, 0) AS versions,
    coalesce(k.version_bytes, 0) AS version_bytes,
    k.first_captured,
    k.last_captured
FROM (VALUES (1, 'mail'), (2, 'files'), (3, 'calendar'), (4, 'contacts'), (5, 'teams'))
    AS w (position, workload)
LEFT JOIN items AS i USING (workload)
LEFT JOIN kept AS k USING (workload)
ORDER BY w.position;
