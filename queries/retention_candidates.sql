-- Archived versions that each delete policy has expired, split into those a keep policy
-- protects, those a custodian hold keeps, and the candidates the next purge would remove.
--
-- Columns: policy, policy_id, workload, basis, days, expired (versions past the policy's
-- age), protected (of those, kept by a keep policy), held (of the rest, under an active
-- custodian hold), candidates, candidate_items and candidate_bytes.
--
-- The rules are the purge's. Age counts from the version's date (received time for mail,
-- modified time for files) or, with basis 'deleted', from when the tenant deleted the
-- item. A keep policy protects the versions younger than its days, and a version without
-- a date cannot be shown old enough, so an item_date keep policy protects it. A version
-- that two delete policies expire is counted under both. Deletion tombstones, which go
-- with their item's last version, are not counted.
--
-- NOTE: query holds match items through the search index, which SQL cannot read, so
-- they are not applied here and candidates is an upper bound while any is active. The
-- purge's dry run (`m365lake retention purge`) applies every hold.
--
-- To adapt: replace now() with a timestamp to see what a purge on that day would remove,
-- or group the candidates by container_id to see them per mailbox or drive.
WITH versions AS MATERIALIZED (
    SELECT
        row_number() OVER () AS version_key,
        *,
        last_value(deleted_at) OVER (
            PARTITION BY workload, container_id, item_id ORDER BY captured_at
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS item_deleted_at
    FROM (
        SELECT
            'mail' AS workload,
            mailbox_id AS container_id,
            CAST(NULL AS VARCHAR) AS site_id,
            message_id AS item_id,
            captured_at,
            coalesce(received_at, sent_at) AS item_date,
            deleted_at,
            size
        FROM message_versions
        UNION ALL
        SELECT
            'files', v.drive_id, d.site_id, v.item_id, v.captured_at, v.modified_at,
            v.deleted_at, v.size
        FROM file_versions AS v
        LEFT JOIN drives AS d USING (drive_id)
    )
),
scoped AS (
    SELECT
        p.policy_id,
        p.action,
        p.basis,
        p.days,
        v.version_key,
        v.item_date,
        CASE p.basis WHEN 'deleted' THEN v.item_deleted_at ELSE v.item_date END AS reference
    FROM retention_policies AS p
    JOIN versions AS v ON v.workload = p.workload
    WHERE p.locations IS NULL
       OR list_contains(p.locations, 'mailbox:' || v.container_id)
       OR list_contains(p.locations, 'onedrive:' || v.container_id)
       OR list_contains(p.locations, 'site:' || v.site_id)
),
expired AS (
    SELECT policy_id, version_key
    FROM scoped
    WHERE action = 'delete' AND reference <= now() - to_days(CAST(days AS INTEGER))
),
protected AS (
    SELECT DISTINCT version_key
    FROM scoped
    WHERE action = 'keep' AND (
        (basis = 'deleted' AND reference > now() - to_days(CAST(days AS INTEGER)))
        OR (basis = 'item_date'
            AND (reference IS NULL OR reference > now() - to_days(CAST(days AS INTEGER))))
    )
),
hold_locations AS (
    SELECT unnest(custodian_ids) AS custodian_id, date_start, date_end
    FROM holds
    WHERE status = 'active' AND kind = 'custodian'
),
held AS (
    SELECT DISTINCT v.version_key
    FROM hold_locations AS l
    JOIN versions AS v ON l.custodian_id IN (
        CASE v.workload WHEN 'mail' THEN 'mailbox:' ELSE 'onedrive:' END || v.container_id,
        'site:' || v.site_id
    )
    WHERE (l.date_start IS NULL OR v.item_date IS NULL OR v.item_date >= l.date_start)
      AND (l.date_end IS NULL OR v.item_date IS NULL OR v.item_date < l.date_end)
),
decided AS (
    SELECT
        e.policy_id,
        v.container_id || '/' || v.item_id AS item,
        v.size,
        pr.version_key IS NOT NULL AS is_protected,
        h.version_key IS NOT NULL AS is_held
    FROM expired AS e
    JOIN versions AS v USING (version_key)
    LEFT JOIN protected AS pr USING (version_key)
    LEFT JOIN held AS h USING (version_key)
)
SELECT
    p.name AS policy,
    p.policy_id,
    p.workload,
    p.basis,
    p.days,
    count(d.item) AS expired,
    count(d.item) FILTER (WHERE d.is_protected) AS protected,
    count(d.item) FILTER (WHERE d.is_held AND NOT d.is_protected) AS held,
    count(d.item) FILTER (WHERE NOT d.is_held AND NOT d.is_protected) AS candidates,
    count(DISTINCT d.item) FILTER (WHERE NOT d.is_held AND NOT d.is_protected)
        AS candidate_items,
    coalesce(sum(d.size) FILTER (WHERE NOT d.is_held AND NOT d.is_protected), 0)
        AS candidate_bytes
FROM retention_policies AS p
LEFT JOIN decided AS d USING (policy_id)
WHERE p.action = 'delete'
GROUP BY ALL
ORDER BY candidate_bytes DESC, policy;
