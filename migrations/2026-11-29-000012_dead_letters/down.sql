DROP TABLE IF EXISTS dead_letter_replays;
DROP TABLE IF EXISTS dead_letters;
