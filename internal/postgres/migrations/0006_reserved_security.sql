-- Placeholder for the security migration (0006_security.sql, built on
-- another branch) so that 0007 applies without a gap on this branch.
-- DELETE THIS FILE when merging 0006_security.sql.
SELECT 1;
