DELETE FROM consumer_offsets WHERE next_offset IS NULL;
ALTER TABLE consumer_offsets ALTER COLUMN next_offset SET NOT NULL;
ALTER TABLE consumer_offsets DROP COLUMN owner_epoch;
