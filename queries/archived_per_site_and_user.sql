-- Files archived per OneDrive owner and per SharePoint site: live files, their bytes,
-- the versions kept, and files deleted in the tenant that the archive still holds.
WITH versions AS (
    SELECT drive_id, count(*) AS versions, count(DISTINCT item_id) FILTER (
        WHERE deleted_at IS NOT NULL
    ) AS deleted_in_tenant
    FROM file_versions
    GROUP BY drive_id
)
SELECT
    d.owner_kind,
    coalesce(s.display_name, d.owner_name, d.owner_id) AS owner,
    d.name AS library,
    count(f.item_id) AS live_files,
    coalesce(sum(f.size), 0) AS live_bytes,
    any_value(v.versions) AS versions_kept,
    any_value(v.deleted_in_tenant) AS deleted_in_tenant
FROM drives AS d
LEFT JOIN sites AS s USING (site_id)
LEFT JOIN files AS f USING (drive_id)
LEFT JOIN versions AS v USING (drive_id)
GROUP BY ALL
ORDER BY live_bytes DESC, owner, library;
