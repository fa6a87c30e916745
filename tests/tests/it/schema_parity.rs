//! Every service's PostgreSQL and SQLite migration trees build the same schema: the same
//! tables and columns, of the same kind and nullability (one store speaks to both).

use pos::up::SERVICES;
use pos_platform::testing::schema_drift;

#[tokio::test]
async fn each_service_builds_one_schema_on_both_databases() {
    let mut drifted = Vec::new();
    for (service, migrations) in SERVICES {
        let drift = schema_drift(service, migrations).await.expect("both migration trees apply");
        if !drift.0.is_empty() {
            drifted.push(format!("{service}:\n{drift}"));
        }
    }
    assert!(drifted.is_empty(), "migration trees drifted apart:\n{}", drifted.join("\n"));
}
