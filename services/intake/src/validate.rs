//! Checks a submission against the classifier snapshot and the limits, naming every offending
//! field. Descriptions never quote the text: it may hold personal data.

use pos_platform::error::FieldViolations;
use pos_proto::v1::{AddresseeKind, Fact, OrganizationType, Source, SubmitAppealRequest};

use crate::classifier::{ClassifierSnapshot, OrganizationLookup};
use crate::store::ClassifierNames;

pub const MAX_REQUEST_ID_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 300;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_ID_CHARS: usize = 128;
const MAX_ADDRESS_CHARS: usize = 1000;
const MAX_PORTAL_NUMBER_CHARS: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_attachments: usize,
}

/// The classification a valid request resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub category_id: String,
    pub subcategory_id: String,
    pub fact_id: String,
    /// The classifier's names, for what people read downstream.
    pub names: ClassifierNames,
    /// The type the picked organization must have, when the fact is addressed to it.
    pub picked_type: Option<OrganizationType>,
}

/// The idempotency key is checked first, on its own: a repeated request is answered before
/// anything else is looked at.
pub fn request_id(request_id: &str) -> Result<(), FieldViolations> {
    let mut violations = FieldViolations::new();
    let length = request_id.chars().count();
    if request_id.trim().is_empty() {
        violations.add("request_id", "required: a client-chosen idempotency key");
    } else if length > MAX_REQUEST_ID_CHARS {
        violations.add("request_id", format!("{length} characters is longer than {MAX_REQUEST_ID_CHARS}"));
    } else if request_id.chars().any(char::is_control) {
        violations.add("request_id", "must not contain control characters");
    }
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

/// Everything that can be checked without asking anyone: shape, limits, classifier, region.
/// Missing category and subcategory ids are taken from the fact.
pub fn submission(
    request: &SubmitAppealRequest,
    snapshot: &ClassifierSnapshot,
    limits: &Limits,
    violations: &mut FieldViolations,
) -> Option<Classified> {
    match Source::try_from(request.source) {
        Ok(Source::Unspecified) | Err(_) => violations.add("source", "required: where the appeal came from"),
        Ok(_) => {}
    }
    applicant(request, violations);
    if request.region_code.is_empty() {
        violations.add("region_code", "required: the applicant's region, e.g. \"41\"");
    } else if snapshot.region(&request.region_code).is_none() {
        violations.add("region_code", format!("unknown region {:?}", truncate(&request.region_code)));
    }
    let classified = classification(request, snapshot, violations);
    if request.picked_organization_id.chars().count() > MAX_ID_CHARS {
        violations.add("picked_organization_id", format!("longer than {MAX_ID_CHARS} characters"));
    } else if let Some(Classified { picked_type: Some(kind), .. }) = &classified
        && request.picked_organization_id.is_empty()
    {
        violations.add(
            "picked_organization_id",
            format!("required: the fact is addressed to the organization the applicant picks ({})", type_name(*kind)),
        );
    }
    text(&request.text, limits.max_text_chars, violations);
    let address_length = request.problem_address.chars().count();
    if address_length > MAX_ADDRESS_CHARS {
        violations.add("problem_address", format!("{address_length} characters is longer than {MAX_ADDRESS_CHARS}"));
    }
    let portal_length = request.portal_number.chars().count();
    if portal_length > MAX_PORTAL_NUMBER_CHARS {
        violations.add("portal_number", format!("{portal_length} characters is longer than {MAX_PORTAL_NUMBER_CHARS}"));
    }
    attachment_ids(&request.attachment_ids, limits.max_attachments, violations);
    classified
}

fn applicant(request: &SubmitAppealRequest, violations: &mut FieldViolations) {
    let Some(applicant) = &request.applicant else {
        violations.add("applicant", "required: who the appeal is from");
        return;
    };
    let name_length = applicant.full_name.chars().count();
    if applicant.full_name.trim().is_empty() {
        violations.add("applicant.full_name", "required");
    } else if name_length > MAX_NAME_CHARS {
        violations.add("applicant.full_name", format!("{name_length} characters is longer than {MAX_NAME_CHARS}"));
    }
    if !applicant.email.is_empty() && !plausible_email(&applicant.email) {
        violations.add("applicant.email", "not an e-mail address");
    }
    if !applicant.phone.is_empty() && !plausible_phone(&applicant.phone) {
        violations.add("applicant.phone", "not a phone number: digits, optionally with + ( ) - and spaces");
    }
    if applicant.account_id.chars().count() > MAX_ID_CHARS {
        violations.add("applicant.account_id", format!("longer than {MAX_ID_CHARS} characters"));
    }
}

fn classification(
    request: &SubmitAppealRequest,
    snapshot: &ClassifierSnapshot,
    violations: &mut FieldViolations,
) -> Option<Classified> {
    if request.fact_id.is_empty() {
        violations.add("fact_id", "required: the fact the applicant picked");
        return None;
    }
    let Some(fact) = snapshot.fact(&request.fact_id) else {
        violations.add("fact_id", format!("unknown fact {:?}", truncate(&request.fact_id)));
        return None;
    };
    if !fact.active {
        violations.add("fact_id", format!("fact {:?} is no longer accepted", fact.id));
    }
    let subcategory_id =
        if request.subcategory_id.is_empty() { fact.subcategory_id.clone() } else { request.subcategory_id.clone() };
    let Some(subcategory) = snapshot.subcategory(&subcategory_id) else {
        violations.add("subcategory_id", format!("unknown subcategory {:?}", truncate(&subcategory_id)));
        return None;
    };
    if fact.subcategory_id != subcategory.id {
        violations.add("fact_id", format!("fact {:?} does not belong to subcategory {:?}", fact.id, subcategory.id));
        return None;
    }
    if !subcategory.active {
        violations.add("subcategory_id", format!("subcategory {:?} is no longer accepted", subcategory.id));
    }
    let category_id =
        if request.category_id.is_empty() { subcategory.category_id.clone() } else { request.category_id.clone() };
    let category_name = match snapshot.category(&category_id) {
        None => {
            violations.add("category_id", format!("unknown category {:?}", truncate(&category_id)));
            return None;
        }
        Some(category) if subcategory.category_id != category.id => {
            violations.add(
                "subcategory_id",
                format!("subcategory {:?} does not belong to category {:?}", subcategory.id, category.id),
            );
            return None;
        }
        Some(category) => {
            if !category.active {
                violations.add("category_id", format!("category {:?} is no longer accepted", category.id));
            }
            category.name.clone()
        }
    };
    let names =
        ClassifierNames { category: category_name, subcategory: subcategory.name.clone(), fact: fact.name.clone() };
    Some(Classified { category_id, subcategory_id, fact_id: fact.id.clone(), names, picked_type: picked_type(fact) })
}

/// The type a fact addressed to the applicant's pick requires.
fn picked_type(fact: &Fact) -> Option<OrganizationType> {
    let addressee = fact.addressee.as_ref()?;
    (addressee.kind() == AddresseeKind::Picked).then(|| addressee.organization_type())
}

fn text(text: &str, max_chars: usize, violations: &mut FieldViolations) {
    if text.trim().is_empty() {
        violations.add("text", "required: the appeal's text");
        return;
    }
    let length = text.chars().count();
    if length > max_chars {
        violations.add("text", format!("{length} characters is longer than {max_chars}"));
    }
}

fn attachment_ids(ids: &[String], max: usize, violations: &mut FieldViolations) {
    if ids.len() > max {
        violations.add("attachment_ids", format!("{} attachments is more than {max}", ids.len()));
        return;
    }
    for (index, id) in ids.iter().enumerate() {
        let field = format!("attachment_ids[{index}]");
        if uuid::Uuid::parse_str(id).is_err() {
            violations.add(field, "not an id returned by UploadAttachment");
        } else if ids[..index].contains(id) {
            violations.add(field, "the same attachment is listed twice");
        }
    }
}

/// The picked organization, once looked up: it must exist and be of the fact's type. When
/// routing could not be asked the appeal goes on: routing decides later and explains.
pub fn picked_organization(
    picked_id: &str,
    lookup: &OrganizationLookup,
    required: Option<OrganizationType>,
    violations: &mut FieldViolations,
) {
    match lookup {
        OrganizationLookup::Found(organization) => {
            if let Some(required) = required
                && organization.r#type() != required
            {
                violations.add(
                    "picked_organization_id",
                    format!(
                        "organization {:?} is a {}, the fact is addressed to a {}",
                        picked_id,
                        type_name(organization.r#type()),
                        type_name(required)
                    ),
                );
            }
        }
        OrganizationLookup::NotFound => {
            violations.add("picked_organization_id", format!("unknown organization {:?}", truncate(picked_id)));
        }
        OrganizationLookup::Unchecked => {}
    }
}

/// `ORGANIZATION_TYPE_REGIONAL_MINISTRY` → `regional ministry`.
pub fn type_name(kind: OrganizationType) -> String {
    kind.as_str_name().trim_start_matches("ORGANIZATION_TYPE_").replace('_', " ").to_lowercase()
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.chars().count() <= MAX_EMAIL_CHARS
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn plausible_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    (5..=15).contains(&digits) && phone.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '(' | ')' | '-' | ' '))
}

/// Ids echoed in messages are cut short: a client could send anything there.
fn truncate(value: &str) -> String {
    value.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use pos_proto::v1::{AddresseeRule, Applicant, Category, Classifier, Organization, Region, Subcategory};

    use super::*;

    fn snapshot() -> ClassifierSnapshot {
        ClassifierSnapshot::new(
            Classifier {
                categories: vec![Category { id: "edu".into(), name: "Образование".into(), active: true }],
                subcategories: vec![
                    Subcategory {
                        id: "docs".into(),
                        category_id: "edu".into(),
                        name: "Документы".into(),
                        active: true,
                    },
                    Subcategory {
                        id: "diary".into(), category_id: "edu".into(), name: "Дневник".into(), active: true
                    },
                ],
                facts: vec![Fact {
                    id: "school-cert".into(),
                    subcategory_id: "docs".into(),
                    name: "Аттестат не отображается".into(),
                    addressee: Some(AddresseeRule {
                        kind: AddresseeKind::Picked as i32,
                        organization_type: OrganizationType::School as i32,
                        organization_id: String::new(),
                    }),
                    active: true,
                    ..Fact::default()
                }],
                version: 1,
            },
            vec![Region { code: "41".into(), name: "Камчатский край".into(), ..Region::default() }],
        )
    }

    fn request() -> SubmitAppealRequest {
        SubmitAppealRequest {
            request_id: "r1".into(),
            source: Source::Epgu as i32,
            applicant: Some(Applicant {
                full_name: "Иванов Иван".into(),
                email: "ivan@example.ru".into(),
                phone: "+7 (900) 123-45-67".into(),
                account_id: "esia-1".into(),
            }),
            region_code: "41".into(),
            category_id: "edu".into(),
            subcategory_id: "docs".into(),
            fact_id: "school-cert".into(),
            picked_organization_id: "school-7".into(),
            text: "Аттестат не отображается".into(),
            ..SubmitAppealRequest::default()
        }
    }

    const LIMITS: Limits = Limits { max_text_chars: 100, max_attachments: 2 };

    fn fields(request: &SubmitAppealRequest) -> Vec<String> {
        let mut violations = FieldViolations::new();
        submission(request, &snapshot(), &LIMITS, &mut violations);
        violations.fields().map(str::to_owned).collect()
    }

    #[test]
    fn a_complete_request_passes_and_resolves_its_classification() {
        let mut violations = FieldViolations::new();
        let classified = submission(&request(), &snapshot(), &LIMITS, &mut violations).unwrap();
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(classified.picked_type, Some(OrganizationType::School));
        // Parents may be left out: they follow from the fact.
        let mut short = request();
        short.category_id.clear();
        short.subcategory_id.clear();
        let classified = submission(&short, &snapshot(), &LIMITS, &mut violations).unwrap();
        assert!(violations.is_empty());
        assert_eq!((classified.category_id.as_str(), classified.subcategory_id.as_str()), ("edu", "docs"));
    }

    #[test]
    fn each_problem_names_its_field() {
        let mut r = request();
        r.fact_id = "nope".into();
        assert_eq!(fields(&r), ["fact_id"]);
        let mut r = request();
        r.subcategory_id = "diary".into();
        assert_eq!(fields(&r), ["fact_id"]);
        let mut r = request();
        r.region_code = "99".into();
        assert_eq!(fields(&r), ["region_code"]);
        let mut r = request();
        r.text = "   ".into();
        assert_eq!(fields(&r), ["text"]);
        let mut r = request();
        r.text = "я".repeat(101);
        assert_eq!(fields(&r), ["text"]);
        let mut r = request();
        r.picked_organization_id.clear();
        assert_eq!(fields(&r), ["picked_organization_id"]);
        let mut r = request();
        r.source = 0;
        r.applicant.as_mut().unwrap().email = "not-mail".into();
        r.attachment_ids = vec![uuid::Uuid::nil().to_string(), uuid::Uuid::nil().to_string(), "x".into()];
        assert_eq!(fields(&r), ["source", "applicant.email", "attachment_ids"]);
        let mut r = request();
        r.attachment_ids = vec![uuid::Uuid::nil().to_string(), uuid::Uuid::nil().to_string()];
        assert_eq!(fields(&r), ["attachment_ids[1]"]);
    }

    #[test]
    fn the_picked_organization_must_have_the_facts_type() {
        let college =
            Organization { id: "c1".into(), r#type: OrganizationType::College as i32, ..Organization::default() };
        let mut violations = FieldViolations::new();
        picked_organization("c1", &OrganizationLookup::Found(college), Some(OrganizationType::School), &mut violations);
        let status = tonic::Status::from(pos_platform::ApiError::Invalid(violations));
        assert!(status.message().contains("is a college, the fact is addressed to a school"), "{}", status.message());
        let mut violations = FieldViolations::new();
        picked_organization("x", &OrganizationLookup::NotFound, None, &mut violations);
        assert_eq!(violations.fields().collect::<Vec<_>>(), ["picked_organization_id"]);
        let mut violations = FieldViolations::new();
        picked_organization("x", &OrganizationLookup::Unchecked, Some(OrganizationType::School), &mut violations);
        assert!(violations.is_empty(), "routing being down never refuses an appeal");
    }

    #[test]
    fn request_ids_are_bounded() {
        assert!(request_id("abc").is_ok());
        assert!(request_id("").is_err());
        assert!(request_id(&"x".repeat(129)).is_err());
    }
}
