//! Full-text search over messages: the condition the GIN index on the generated
//! `search_vector` column answers.

use crate::queries::filter::Predicate;
use diesel::dsl::sql;
use diesel::sql_types::{Bool, Text};

/// `search_vector @@ websearch_to_tsquery('english', $n)`. An SQL fragment with a
/// bound value: diesel has no full-text operators, and `search_vector` (a generated
/// tsvector) is left out of `schema.rs`. `websearch_to_tsquery` never fails on user
/// text, so any input is just a query: words, `"a phrase"`, `-word`, `or`.
pub fn matches(text: &str) -> Predicate {
    Box::new(
        sql::<Bool>("search_vector @@ websearch_to_tsquery('english', ")
            .bind::<Text, _>(text.to_owned())
            .sql(")"),
    )
}
