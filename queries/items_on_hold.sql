-- Archived items under each active legal hold, per case and hold: the volume that
-- retention must keep until the hold is released.
--
-- Columns: case_name, case_id, hold_id, hold_name, kind (custodian or query),
-- mail_items, file_items, event_items, contact_items, teams_items, versions (archived
-- versions held) and bytes (their sizes: MIME size for mail, file size for files, Graph
-- JSON size for events, contacts and channel messages).
--
-- Custodian holds are resolved the way the purge resolves them. A mailbox holds its
-- messages, calendar events and contacts, a OneDrive its files, a site the files of all
-- its libraries, and a team the messages of all its channels. A date range limits a hold
-- to versions dated inside it (received time for mail, modified time for files and
-- contacts, the end of an event or of a series' recurrence range, creation time for
-- channel messages), and a version without a date is held. A team hold also keeps the
-- archived files its messages link to; file_items does not count those. Query holds match items through the
-- search index, which SQL cannot read, so their counts are NULL here. The purge's dry run
-- (`m365lake retention purge`) and m365lake.discovery.HoldCoverage apply them.
--
-- To adapt: filter one case with `WHERE case_id = '...'` in `active`, or group `held` by
-- container_id instead of hold to see the held volume per custodian.
WITH active AS (
    SELECT case_id, hold_id, name, kind, custodian_ids, date_start, date_end
    FROM holds
    WHERE status = 'active'
),
locations AS (
    SELECT
        case_id,
        hold_id,
        split_part(custodian_id, ':', 1) AS location_kind,
        substr(custodian_id, strpos(custodian_id, ':') + 1) AS container_id
    FROM (
        SELECT case_id, hold_id, unnest(custodian_ids) AS custodian_id
        FROM active
        WHERE kind = 'custodian'
    )
),
versions AS (
    SELECT
        'mail' AS workload,
        mailbox_id AS container_id,
        -- The site of a drive or the team of a channel, which site and team holds match.
        CAST(NULL AS VARCHAR) AS parent_id,
        message_id AS item_id,
        coalesce(received_at, sent_at) AS item_date,
        size
    FROM message_versions
    UNION ALL
    SELECT 'files', v.drive_id, d.site_id, v.item_id, v.modified_at, v.size
    FROM file_versions AS v
    LEFT JOIN drives AS d USING (drive_id)
    UNION ALL
    SELECT
        'calendar',
        mailbox_id,
        NULL,
        event_id,
        CASE
            WHEN event_type <> 'seriesMaster' OR event_type IS NULL
                THEN coalesce(end_at, start_at)
            WHEN json_extract_string(
                CASE WHEN json_valid(recurrence) THEN recurrence END, '$.range.type'
            ) = 'endDate'
                THEN timezone('UTC', CAST(TRY_CAST(json_extract_string(
                    CASE WHEN json_valid(recurrence) THEN recurrence END, '$.range.endDate'
                ) AS DATE) + INTERVAL 1 DAY AS TIMESTAMP))
        END,
        size
    FROM events_rows
    WHERE change <> 'deleted'
    UNION ALL
    SELECT 'contacts', mailbox_id, NULL, contact_id, coalesce(modified_at, created_at), size
    FROM contacts_rows
    WHERE change <> 'deleted'
    UNION ALL
    SELECT 'teams', channel_id, team_id, message_id, created_at, size
    FROM channel_messages_rows
    WHERE change <> 'deleted'
),
held AS (
    SELECT a.case_id, a.hold_id, v.workload, v.container_id, v.item_id, v.size
    FROM locations AS l
    JOIN active AS a USING (case_id, hold_id)
    JOIN versions AS v ON (
        (
            l.location_kind = 'mailbox'
            AND v.workload IN ('mail', 'calendar', 'contacts')
            AND v.container_id = l.container_id
        )
        OR (l.location_kind = 'onedrive' AND v.workload = 'files' AND v.container_id = l.container_id)
        OR (l.location_kind = 'site' AND v.workload = 'files' AND v.parent_id = l.container_id)
        OR (l.location_kind = 'team' AND v.workload = 'teams' AND v.parent_id = l.container_id)
    )
    WHERE (a.date_start IS NULL OR v.item_date IS NULL OR v.item_date >= a.date_start)
      AND (a.date_end IS NULL OR v.item_date IS NULL OR v.item_date < a.date_end)
)
SELECT
    c.name AS case_name,
    a.case_id,
    a.hold_id,
    a.name AS hold_name,
    a.kind,
    CASE WHEN a.kind = 'custodian' THEN count(DISTINCT h.container_id || '/' || h.item_id)
        FILTER (WHERE h.workload = 'mail') END AS mail_items,
    CASE WHEN a.kind = 'custodian' THEN count(DISTINCT h.container_id || '/' || h.item_id)
        FILTER (WHERE h.workload = 'files') END AS file_items,
    CASE WHEN a.kind = 'custodian' THEN count(DISTINCT h.container_id || '/' || h.item_id)
        FILTER (WHERE h.workload = 'calendar') END AS event_items,
    CASE WHEN a.kind = 'custodian' THEN count(DISTINCT h.container_id || '/' || h.item_id)
        FILTER (WHERE h.workload = 'contacts') END AS contact_items,
    CASE WHEN a.kind = 'custodian' THEN count(DISTINCT h.container_id || '/' || h.item_id)
        FILTER (WHERE h.workload = 'teams') END AS teams_items,
    CASE WHEN a.kind = 'custodian' THEN count(h.item_id) END AS versions,
    CASE WHEN a.kind = 'custodian' THEN coalesce(sum(h.size), 0) END AS bytes
FROM active AS a
JOIN cases AS c USING (case_id)
LEFT JOIN held AS h USING (case_id, hold_id)
GROUP BY c.name, a.case_id, a.hold_id, a.name, a.kind
ORDER BY case_name, a.hold_id;
