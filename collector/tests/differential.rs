//! Validation differential: random schemas and values through the real
//! library's report builder. Every report the library builds is accepted,
//! passes the quarantine's precheck, stays within the size bound `schema
//! check` uses, and decodes to what was sent.

use optin_collector::commands::largest_report_bytes;
use optin_telemetry::report::{build, encode, Builtins, ReportIdentity};
use optin_telemetry::schema::{FieldValue, Kind, Schema};
use optin_telemetry::validate::{bucket_labels, validate, Envelope, ReportValue, OS_FAMILIES};
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn token(&mut self, i: usize) -> String {
        let len = 1 + self.below(12) as usize;
        let chars = b"abcXYZ019_.+-";
        let mut s = format!("v{i}");
        s.extend((0..len).map(|_| chars[self.below(chars.len() as u64) as usize] as char));
        s
    }
}

fn random_schema(r: &mut Rng) -> Value {
    let fields: Vec<Value> = (0..1 + r.below(12))
        .map(|i| {
            let name = format!("f{i}_{}", r.below(1000));
            let description = json!({"en": "x"});
            match r.below(5) {
                0 => json!({"name": name, "type": "bool", "description": description}),
                1 => {
                    let mut bounds: Vec<u64> = (0..1 + r.below(8))
                        .map(|_| match r.below(4) {
                            0 => r.below(10),
                            1 => r.next(),
                            2 => u64::MAX - r.below(3),
                            _ => r.below(100_000),
                        })
                        .collect();
                    bounds.sort_unstable();
                    bounds.dedup();
                    json!({"name": name, "type": "count", "buckets": bounds, "description": description})
                }
                2 => json!({"name": name, "type": "count", "rounding": "1-2-5", "description": description}),
                3 => {
                    let values: Vec<String> = (0..1 + r.below(6) as usize).map(|j| r.token(j)).collect();
                    json!({"name": name, "type": "choice", "values": values, "description": description})
                }
                _ => {
                    let values: Vec<String> = (0..1 + r.below(10) as usize).map(|j| r.token(j)).collect();
                    json!({"name": name, "type": "choices", "values": values, "description": description})
                }
            }
        })
        .collect();
    json!({"version": 1 + r.below(u64::from(u32::MAX)), "fields": fields})
}

fn random_value(r: &mut Rng, kind: &Kind) -> FieldValue {
    match kind {
        Kind::Bool => FieldValue::Bool(r.below(2) == 0),
        Kind::Count { .. } => FieldValue::Count(match r.below(5) {
            0 => u64::MAX - r.below(3),
            1 => r.below(3),
            2 => r.next(),
            3 => 10u64.pow(r.below(20) as u32),
            _ => r.below(1_000_000),
        }),
        Kind::Choice { values } => FieldValue::Choice(r.below(values.len() as u64) as usize),
        Kind::Choices { values } => FieldValue::Choices((0..values.len()).filter(|_| r.below(2) == 0).collect()),
    }
}

#[test]
fn every_report_the_library_builds_from_random_schemas_is_accepted() {
    let mut r = Rng(0x0dd_ba11_cafe_f00d);
    let mut reports = 0;
    for _ in 0..300 {
        let schema = Schema::from_json(&random_schema(&mut r)).unwrap();
        let bound = largest_report_bytes(&schema);
        for _ in 0..20 {
            let values: Vec<Option<FieldValue>> =
                schema.fields.iter().map(|f| (r.below(5) != 0).then(|| random_value(&mut r, &f.kind))).collect();
            let builtins = Builtins {
                os_family: OS_FAMILIES[r.below(OS_FAMILIES.len() as u64) as usize].into(),
                os_version: ["unknown", "10.0.22631", "6.1", "14.5"][r.below(4) as usize].into(),
                arch: ["x86_64", "aarch64", "x86"][r.below(3) as usize].into(),
                product: "Mail Archiver".into(),
                product_version: format!("{}.{}", r.below(100_000), r.below(10)),
                library_version: optin_telemetry::VERSION.into(),
            };
            let mut draw_key = [0u8; 32];
            draw_key[..8].copy_from_slice(&r.next().to_le_bytes());
            let identity = ReportIdentity { id: format!("{:016x}{:016x}", r.next(), r.next()), draw_key };
            let body = build(&schema, &values, &builtins, &identity);
            let accepted = validate(&schema, body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert_eq!(Envelope::parse(body.as_bytes()).unwrap().precheck(), Ok(()), "{body}");
            assert!(body.len() <= bound, "{} > {bound}: {body}", body.len());
            for (i, (sent, got)) in values.iter().zip(&accepted.fields).enumerate() {
                let Some(sent) = sent else {
                    assert!(got.is_none());
                    continue;
                };
                let got = match (got.as_ref().unwrap(), &schema.fields[i].kind) {
                    (ReportValue::Bool(b), _) => json!(b),
                    (ReportValue::Bucket(b), Kind::Count { encoding: optin_telemetry::schema::CountEncoding::Buckets(bounds) }) => {
                        json!(bucket_labels(bounds)[*b])
                    }
                    (ReportValue::Rounded(n), _) => json!(n),
                    (ReportValue::Choice(c), Kind::Choice { values }) => json!(values[*c]),
                    (ReportValue::Choices(set), Kind::Choices { values }) => json!(set.iter().map(|&c| &values[c]).collect::<Vec<_>>()),
                    other => panic!("{other:?}"),
                };
                assert_eq!(got, encode(&schema, i, sent, &identity), "field {i} of {body}");
            }
            reports += 1;
        }
    }
    assert_eq!(reports, 6000);
}
