ALTER TABLE log_events DROP COLUMN lane;
