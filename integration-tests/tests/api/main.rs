//! End-to-end tests against the real Kafka, PostgreSQL and Redis that `./setup.sh`
//! starts. Services under test run in-process on port 0 (with their own topics and
//! consumer groups where isolation matters) and this binary's own database
//! (`helpers::test_database_url`); `stack` checks the services setup.sh started, in
//! the stack's database, reading back only what it sent. Data is isolated per test by
//! unique source names.

mod admin_dead_letters;
mod blocks;
mod blocks_copies;
mod blocks_pages;
mod cache;
mod consumer;
mod dead_letters;
mod gateway;
mod gateway_limits;
mod helpers;
mod histogram;
mod partitions;
mod priority;
mod producer;
mod search_corpus;
mod stack;
mod tail;
