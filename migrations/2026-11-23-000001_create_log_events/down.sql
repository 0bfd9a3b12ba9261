DROP TABLE consumer_offsets;
DROP TABLE log_events;
