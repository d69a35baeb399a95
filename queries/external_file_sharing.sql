-- Live files shared by a link that can reach people outside the organisation, riskiest
-- first: 'anonymous' links work for anyone who has them, and 'users' shares name people,
-- who may be guests.
--
-- Columns: scope, owner (OneDrive owner or site), library, path, shared_by, shared_at,
-- size, modified_at, web_url.
--
-- The scope comes from Graph's driveItem `shared` facet as the last backup saw it. Graph
-- marks that property deprecated in favour of the permissions API, and it gives one
-- scope per item. It does not say whether a 'users' share includes a guest, so treat
-- those rows as "check the permissions". Files archived before the backup captured
-- sharing have no scope.
--
-- To adapt: add 'organization' to the IN list to see every shared file, or query
-- file_versions instead of files to see when each file was first shared.
SELECT
    f.shared_scope AS scope,
    coalesce(s.display_name, d.owner_name, d.owner_id) AS owner,
    d.name AS library,
    f.path,
    f.shared_by,
    f.shared_at,
    f.size,
    f.modified_at,
    f.web_url
FROM files AS f
LEFT JOIN drives AS d USING (drive_id)
LEFT JOIN sites AS s ON s.site_id = d.site_id
WHERE f.shared_scope IN ('anonymous', 'users')
ORDER BY f.shared_scope = 'anonymous' DESC, f.shared_at DESC, owner, f.path;
