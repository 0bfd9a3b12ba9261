//! End-to-end tests live in `tests/api/`; this library is empty on purpose.
//!
//! Run them with `./setup.sh test` after `./setup.sh` has started Kafka,
//! PostgreSQL, Redis and the three services.
