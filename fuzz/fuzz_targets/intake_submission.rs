//! A submission as any client may send it, checked the way intake checks it before anything is
//! stored: nothing panics, and no field error depends on what the applicant wrote, only on its
//! shape (it may hold personal data, and field errors go back to the caller and into logs).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pos_intake::classifier::ClassifierSnapshot;
use pos_intake::validate::{self, Limits};
use pos_platform::error::FieldViolations;
use pos_proto::v1::{
    AddresseeKind, AddresseeRule, Category, Classifier, Fact, OrganizationType, Region, Subcategory,
    SubmitAppealRequest,
};
use prost::Message;

static SNAPSHOT: LazyLock<ClassifierSnapshot> = LazyLock::new(|| {
    let fact = |id: &str, kind: AddresseeKind, organization_type: OrganizationType| Fact {
        id: id.into(),
        subcategory_id: "docs".into(),
        name: format!("Факт {id}"),
        addressee: Some(AddresseeRule {
            kind: kind as i32,
            organization_type: organization_type as i32,
            organization_id: String::new(),
        }),
        active: true,
        ..Fact::default()
    };
    ClassifierSnapshot::new(
        Classifier {
            categories: vec![Category { id: "edu".into(), name: "Образование".into(), active: true }],
            subcategories: vec![Subcategory {
                id: "docs".into(),
                category_id: "edu".into(),
                name: "Документы".into(),
                active: true,
            }],
            facts: vec![
                fact("school-cert", AddresseeKind::Picked, OrganizationType::School),
                fact("region-wide", AddresseeKind::Regional, OrganizationType::RegionalMinistry),
            ],
            version: 1,
        },
        vec![
            Region { code: "41".into(), name: "Камчатский край".into(), ..Region::default() },
            Region { code: "16".into(), name: "Республика Татарстан".into(), ..Region::default() },
        ],
    )
});

const LIMITS: Limits = Limits { max_text_chars: 4000, max_attachments: 10 };

fuzz_target!(|data: &[u8]| {
    let Ok(request) = SubmitAppealRequest::decode(data) else { return };
    let _ = validate::request_id(&request.request_id);
    let mut violations = FieldViolations::new();
    let _ = validate::submission(&request, &SNAPSHOT, &LIMITS, &mut violations);
    // The text reaches the errors only through its shape (blank, too long, control
    // characters): the same errors come for any other text of that shape.
    let disguised: String =
        request.text.chars().map(|c| if c.is_whitespace() || c.is_control() { c } else { 'ж' }).collect();
    let mut disguised_violations = FieldViolations::new();
    let other = SubmitAppealRequest { text: disguised, ..request.clone() };
    let _ = validate::submission(&other, &SNAPSHOT, &LIMITS, &mut disguised_violations);
    assert_eq!(violations.to_string(), disguised_violations.to_string(), "a field error depends on what the text says");
});
