//! Weekly aggregation: week x schema x field x value -> count, built-ins
//! included. Pure; the storage backends feed it rows and store its result.

use crate::privacy::{decode_codes, ReportRow};
use crate::storage::SchemaSet;
use optin_telemetry::validate::labels;
use std::collections::HashMap;

#[derive(Default, Debug)]
pub struct Aggregates {
    /// (schema id, field, value) -> count.
    pub cells: HashMap<(i64, String, String), i64>,
    /// schema id -> reports.
    pub totals: HashMap<i64, i64>,
    /// Rows whose schema is unknown or whose codes do not decode (skipped).
    pub skipped: u64,
}

impl Aggregates {
    pub fn add(&mut self, schemas: &SchemaSet, row: &ReportRow) {
        let Some(schema) = schemas.by_id.get(&row.schema_id) else {
            self.skipped += 1;
            return;
        };
        let Some(values) = decode_codes(schema, &row.codes) else {
            self.skipped += 1;
            return;
        };
        *self.totals.entry(row.schema_id).or_default() += 1;
        let builtins = [
            ("os_family", &row.os_family),
            ("os_version", &row.os_version),
            ("arch", &row.arch),
            ("product", &row.product),
            ("product_version", &row.product_version),
            ("library_version", &row.library_version),
        ];
        for (name, value) in builtins {
            *self.cells.entry((row.schema_id, name.to_string(), value.clone())).or_default() += 1;
        }
        for (field, value) in schema.fields.iter().zip(values) {
            if let Some(v) = value {
                for label in labels(&field.kind, &v) {
                    *self.cells.entry((row.schema_id, field.name.clone(), label)).or_default() += 1;
                }
            }
        }
    }

    pub fn reports(&self) -> u64 {
        self.totals.values().sum::<i64>() as u64
    }
}
