//! End-to-end tests against the real Kafka, PostgreSQL and Redis that `./setup.sh`
//! starts. Services under test run in-process on port 0 (with their own topics and
//! consumer groups where isolation matters); `stack` checks the services setup.sh
//! started. Data is isolated per test by unique source names.

mod consumer;
mod gateway;
mod gateway_limits;
mod helpers;
mod producer;
mod stack;
