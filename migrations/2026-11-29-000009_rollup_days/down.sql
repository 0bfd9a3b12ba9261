DROP TABLE log_rollup_day;
