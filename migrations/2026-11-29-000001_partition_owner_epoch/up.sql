-- The fence for parallel writers and rebalances. Each time an instance is given a
-- partition it claims it by moving owner_epoch on (and learns the stored offset in the
-- same statement). Every batch transaction locks its partitions' rows and commits only
-- if the epochs it read at its claim are still there, so a writer whose instance lost a
-- partition (a rebalance, a paused process that timed out of the group) can never
-- commit rows or an offset for it.
ALTER TABLE consumer_offsets ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;
-- A claim of a partition nothing was ever stored for has no offset yet: NULL means
-- "start at the beginning of the partition".
ALTER TABLE consumer_offsets ALTER COLUMN next_offset DROP NOT NULL;
