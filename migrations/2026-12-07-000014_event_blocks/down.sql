DROP TABLE log_blocks;
