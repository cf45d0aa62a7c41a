-- Placeholder for the notifier's migration (0005_notifier.sql, built on
-- another branch) so that 0006 applies without a gap on this branch.
-- DELETE THIS FILE when merging 0005_notifier.sql.
SELECT 1;
