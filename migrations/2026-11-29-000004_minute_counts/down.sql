DROP TABLE log_counts_minute;
