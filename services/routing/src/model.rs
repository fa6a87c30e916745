//! The routing domain: the classifier (category → subcategory → fact, each fact with its
//! addressee rule and review period), the organizations directory, regions and auto-rules, and
//! the two snapshots the resolver reads them from.

use std::collections::HashMap;
use std::fmt;

use pos_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// Kinds of organizations in the directory; stored in the database and written in seed files in
/// snake case (`municipal_education_department`), by serde and strum alike.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OrgType {
    School,
    College,
    MunicipalEducationDepartment,
    RegionalMinistry,
    RegionalCenter,
    /// The region's own cabinet, the addressee of last resort.
    RegionalCabinet,
    FederalAgency,
    Clinic,
    Other,
}

impl OrgType {
    pub const ALL: &'static [OrgType] = <OrgType as strum::VariantArray>::VARIANTS;

    /// The name stored in the database and written in seed files.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The name people read in the cabinet and in routing's explanations.
    pub fn title(self) -> &'static str {
        match self {
            OrgType::School => "школа",
            OrgType::College => "колледж",
            OrgType::MunicipalEducationDepartment => "муниципальный орган управления образованием",
            OrgType::RegionalMinistry => "региональное министерство",
            OrgType::RegionalCenter => "региональный центр",
            OrgType::RegionalCabinet => "кабинет региона",
            OrgType::FederalAgency => "федеральный орган",
            OrgType::Clinic => "медицинская организация",
            OrgType::Other => "иная организация",
        }
    }

    /// `None` for `ORGANIZATION_TYPE_UNSPECIFIED` and values this build does not know.
    pub fn from_proto(value: i32) -> Option<OrgType> {
        match pb::OrganizationType::try_from(value).ok()? {
            pb::OrganizationType::Unspecified => None,
            pb::OrganizationType::School => Some(OrgType::School),
            pb::OrganizationType::College => Some(OrgType::College),
            pb::OrganizationType::MunicipalEducationDepartment => Some(OrgType::MunicipalEducationDepartment),
            pb::OrganizationType::RegionalMinistry => Some(OrgType::RegionalMinistry),
            pb::OrganizationType::RegionalCenter => Some(OrgType::RegionalCenter),
            pb::OrganizationType::RegionalCabinet => Some(OrgType::RegionalCabinet),
            pb::OrganizationType::FederalAgency => Some(OrgType::FederalAgency),
            pb::OrganizationType::Clinic => Some(OrgType::Clinic),
            pb::OrganizationType::Other => Some(OrgType::Other),
        }
    }

    pub fn to_proto(self) -> pb::OrganizationType {
        match self {
            OrgType::School => pb::OrganizationType::School,
            OrgType::College => pb::OrganizationType::College,
            OrgType::MunicipalEducationDepartment => pb::OrganizationType::MunicipalEducationDepartment,
            OrgType::RegionalMinistry => pb::OrganizationType::RegionalMinistry,
            OrgType::RegionalCenter => pb::OrganizationType::RegionalCenter,
            OrgType::RegionalCabinet => pb::OrganizationType::RegionalCabinet,
            OrgType::FederalAgency => pb::OrganizationType::FederalAgency,
            OrgType::Clinic => pb::OrganizationType::Clinic,
            OrgType::Other => pb::OrganizationType::Other,
        }
    }
}

impl fmt::Display for OrgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom a fact is addressed to. Its kind is stored as `picked` / `regional` / `federal`
/// ([`AddresseeKind`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[strum_discriminants(
    name(AddresseeKind),
    derive(strum::VariantArray, strum::IntoStaticStr, strum::EnumString),
    strum(serialize_all = "snake_case")
)]
pub enum Addressee {
    /// The organization the applicant picked, which must be of this type.
    Picked { organization_type: OrgType },
    /// The organization of this type in the applicant's region.
    Regional { organization_type: OrgType },
    /// One federal body for every region.
    Federal { organization_id: String },
}

impl AddresseeKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Addressee {
    /// The stored name of the kind, e.g. `picked`.
    pub fn kind(&self) -> &'static str {
        AddresseeKind::from(self).as_str()
    }

    pub fn to_proto(&self) -> pb::AddresseeRule {
        match self {
            Addressee::Picked { organization_type } => pb::AddresseeRule {
                kind: pb::AddresseeKind::Picked as i32,
                organization_type: organization_type.to_proto() as i32,
                organization_id: String::new(),
            },
            Addressee::Regional { organization_type } => pb::AddresseeRule {
                kind: pb::AddresseeKind::Regional as i32,
                organization_type: organization_type.to_proto() as i32,
                organization_id: String::new(),
            },
            Addressee::Federal { organization_id } => pb::AddresseeRule {
                kind: pb::AddresseeKind::Federal as i32,
                organization_type: pb::OrganizationType::Unspecified as i32,
                organization_id: organization_id.clone(),
            },
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: String,
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
}

impl Category {
    pub fn to_proto(&self) -> pb::Category {
        pb::Category { id: self.id.clone(), name: self.name.clone(), active: self.active }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subcategory {
    pub id: String,
    pub category_id: String,
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
}

impl Subcategory {
    pub fn to_proto(&self) -> pb::Subcategory {
        pb::Subcategory {
            id: self.id.clone(),
            category_id: self.category_id.clone(),
            name: self.name.clone(),
            active: self.active,
        }
    }
}

/// The leaf of the classifier: what the applicant complains about, whom it goes to, how fast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub id: String,
    pub subcategory_id: String,
    pub name: String,
    pub addressee: Addressee,
    /// 0: the standard period, or the fast-track period where the fact is fast-track.
    #[serde(default)]
    pub period_days: i32,
    #[serde(default)]
    pub working_days: bool,
    #[serde(default)]
    pub fast_track_default: bool,
    /// Regions where the fact is fast-track although the default says no.
    #[serde(default)]
    pub fast_track_regions: Vec<String>,
    /// Regions where the fact is not fast-track although the default says yes.
    #[serde(default)]
    pub not_fast_track_regions: Vec<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

impl Fact {
    /// Fast-track is decided per region: the region's exception, else the fact's default.
    pub fn fast_track_in(&self, region_code: &str) -> bool {
        if self.fast_track_regions.iter().any(|r| r == region_code) {
            true
        } else if self.not_fast_track_regions.iter().any(|r| r == region_code) {
            false
        } else {
            self.fast_track_default
        }
    }

    pub fn to_proto(&self) -> pb::Fact {
        pb::Fact {
            id: self.id.clone(),
            subcategory_id: self.subcategory_id.clone(),
            name: self.name.clone(),
            addressee: Some(self.addressee.to_proto()),
            period_days: self.period_days,
            working_days: self.working_days,
            fast_track_default: self.fast_track_default,
            fast_track_regions: self.fast_track_regions.clone(),
            not_fast_track_regions: self.not_fast_track_regions.clone(),
            active: self.active,
        }
    }
}

/// An organization's cabinet (ЛКО) in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub full_name: String,
    #[serde(default)]
    pub short_name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub email: String,
    /// Empty for federal bodies, which serve every region.
    #[serde(default)]
    pub region_code: String,
    /// Empty for a top organization.
    #[serde(default)]
    pub parent_id: String,
    #[serde(rename = "type")]
    pub org_type: OrgType,
    /// Onboarded, staffed, routing configured.
    #[serde(default = "yes")]
    pub connected: bool,
}

impl Organization {
    /// The short name where there is one: what cabinets and explanations show.
    pub fn display_name(&self) -> &str {
        if self.short_name.is_empty() { &self.full_name } else { &self.short_name }
    }

    pub fn to_ref(&self) -> pb::OrganizationRef {
        pb::OrganizationRef {
            id: self.id.clone(),
            short_name: self.display_name().to_owned(),
            r#type: self.org_type.to_proto() as i32,
            region_code: self.region_code.clone(),
        }
    }

    pub fn to_proto(&self) -> pb::Organization {
        pb::Organization {
            id: self.id.clone(),
            full_name: self.full_name.clone(),
            short_name: self.short_name.clone(),
            address: self.address.clone(),
            region_code: self.region_code.clone(),
            parent_id: self.parent_id.clone(),
            r#type: self.org_type.to_proto() as i32,
            connected: self.connected,
            email: self.email.clone(),
            // The directory knows these: see `Directory::organization_proto`.
            ..pb::Organization::default()
        }
    }
}

/// A subject of the Russian Federation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub code: String,
    pub name: String,
    /// IANA zone of the region's capital.
    pub time_zone: String,
    pub cabinet_organization_id: String,
}

impl Region {
    pub fn to_proto(&self) -> pb::Region {
        pb::Region {
            code: self.code.clone(),
            name: self.name.clone(),
            time_zone: self.time_zone.clone(),
            cabinet_organization_id: self.cabinet_organization_id.clone(),
        }
    }
}

/// An organization's rule delegating matching incoming messages onward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRule {
    pub id: String,
    pub organization_id: String,
    /// Lower runs first; ties by id.
    pub priority: i32,
    /// Empty: any fact.
    pub fact_id: String,
    /// Empty: any text; otherwise any of them must occur in the text (case-insensitive).
    pub keywords: Vec<String>,
    pub target_organization_id: String,
    /// Optional: the executor inside the target organization.
    pub target_executor_id: String,
    pub active: bool,
}

impl AutoRule {
    /// Whether the rule applies to a message of `fact_id` with `text`. Keywords match as
    /// substrings so that a stem ("дневник") also matches its inflected forms ("дневника").
    pub fn matches(&self, fact_id: &str, lowercase_text: &str) -> bool {
        self.active
            && (self.fact_id.is_empty() || self.fact_id == fact_id)
            && (self.keywords.is_empty()
                || self.keywords.iter().any(|k| !k.is_empty() && lowercase_text.contains(&k.to_lowercase())))
    }

    pub fn to_proto(&self) -> pb::AutoRule {
        pb::AutoRule {
            id: self.id.clone(),
            organization_id: self.organization_id.clone(),
            priority: self.priority,
            fact_id: self.fact_id.clone(),
            keywords: self.keywords.clone(),
            target_organization_id: self.target_organization_id.clone(),
            target_executor_id: self.target_executor_id.clone(),
            active: self.active,
        }
    }
}

/// What the snapshots are versioned by: each scope has its own counter in the database, in a
/// row named `classifier` / `directory` (also part of the cache keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// Categories, subcategories and facts.
    Classifier,
    /// Regions, organizations and auto-rules.
    Directory,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The classifier as of one version, indexed for lookups.
#[derive(Clone, Debug)]
pub struct Classifier {
    data: ClassifierData,
    facts: HashMap<String, usize>,
    subcategories: HashMap<String, usize>,
    categories: HashMap<String, usize>,
}

/// The classifier's serialized form (what the cache holds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClassifierData {
    pub version: i64,
    pub categories: Vec<Category>,
    pub subcategories: Vec<Subcategory>,
    pub facts: Vec<Fact>,
}

fn index_by<T>(items: &[T], key: impl Fn(&T) -> &str) -> HashMap<String, usize> {
    items.iter().enumerate().map(|(i, item)| (key(item).to_owned(), i)).collect()
}

impl Classifier {
    pub fn new(data: ClassifierData) -> Classifier {
        Classifier {
            facts: index_by(&data.facts, |f| &f.id),
            subcategories: index_by(&data.subcategories, |s| &s.id),
            categories: index_by(&data.categories, |c| &c.id),
            data,
        }
    }

    pub fn data(&self) -> &ClassifierData {
        &self.data
    }

    pub fn version(&self) -> i64 {
        self.data.version
    }

    pub fn fact(&self, id: &str) -> Option<&Fact> {
        self.facts.get(id).map(|&i| &self.data.facts[i])
    }

    pub fn subcategory(&self, id: &str) -> Option<&Subcategory> {
        self.subcategories.get(id).map(|&i| &self.data.subcategories[i])
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.get(id).map(|&i| &self.data.categories[i])
    }

    /// The names people read for an appeal's classification: (category, subcategory, fact).
    /// The ids the appeal names win; what they leave empty is taken from the fact's place in
    /// the tree. An id the classifier does not know has no name (empty).
    pub fn names(&self, category_id: &str, subcategory_id: &str, fact_id: &str) -> Names {
        let fact = self.fact(fact_id);
        let subcategory_id =
            if subcategory_id.is_empty() { fact.map_or("", |f| f.subcategory_id.as_str()) } else { subcategory_id };
        let subcategory = self.subcategory(subcategory_id);
        let category_id =
            if category_id.is_empty() { subcategory.map_or("", |s| s.category_id.as_str()) } else { category_id };
        Names {
            category: self.category(category_id).map(|c| c.name.clone()).unwrap_or_default(),
            subcategory: subcategory.map(|s| s.name.clone()).unwrap_or_default(),
            fact: fact.map(|f| f.name.clone()).unwrap_or_default(),
        }
    }

    pub fn to_proto(&self) -> pb::Classifier {
        pb::Classifier {
            categories: self.data.categories.iter().map(Category::to_proto).collect(),
            subcategories: self.data.subcategories.iter().map(Subcategory::to_proto).collect(),
            facts: self.data.facts.iter().map(Fact::to_proto).collect(),
            version: self.data.version,
        }
    }
}

/// The classifier's names of an appeal's category, subcategory and fact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub category: String,
    pub subcategory: String,
    pub fact: String,
}

impl Names {
    /// Each name that is empty here (an id the classifier does not know) taken from `other`.
    pub fn or(self, category: &str, subcategory: &str, fact: &str) -> Names {
        let pick = |mine: String, theirs: &str| if mine.is_empty() { theirs.to_owned() } else { mine };
        Names {
            category: pick(self.category, category),
            subcategory: pick(self.subcategory, subcategory),
            fact: pick(self.fact, fact),
        }
    }
}

/// Regions, organizations and auto-rules as of one version, indexed for lookups.
#[derive(Clone, Debug)]
pub struct Directory {
    data: DirectoryData,
    regions: HashMap<String, usize>,
    organizations: HashMap<String, usize>,
    /// Per organization, its rules in the order they are tried.
    rules: HashMap<String, Vec<usize>>,
}

/// The directory's serialized form (what the cache holds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DirectoryData {
    pub version: i64,
    pub regions: Vec<Region>,
    pub organizations: Vec<Organization>,
    pub auto_rules: Vec<AutoRule>,
    /// The onboarding confirmations given so far (snapshots cached before they existed read as
    /// none).
    #[serde(default)]
    pub onboarding: Vec<OnboardingConfirmation>,
}

/// One onboarding step an organization's head or coordinator confirmed: who, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingConfirmation {
    pub organization_id: String,
    pub step: OnboardingStep,
    pub confirmed_by: String,
    /// Microseconds since the Unix epoch.
    pub confirmed_at: i64,
}

/// The two steps of onboarding (seed 004): both confirmed, the organization is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OnboardingStep {
    TrainingDone,
    CabinetReady,
}

impl OnboardingStep {
    pub const ALL: [OnboardingStep; 2] = [OnboardingStep::TrainingDone, OnboardingStep::CabinetReady];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn from_proto(value: i32) -> Option<OnboardingStep> {
        match pb::OnboardingStep::try_from(value) {
            Ok(pb::OnboardingStep::TrainingDone) => Some(OnboardingStep::TrainingDone),
            Ok(pb::OnboardingStep::CabinetReady) => Some(OnboardingStep::CabinetReady),
            Ok(pb::OnboardingStep::Unspecified) | Err(_) => None,
        }
    }
}

impl Directory {
    pub fn new(data: DirectoryData) -> Directory {
        let mut rules: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in data.auto_rules.iter().enumerate() {
            rules.entry(rule.organization_id.clone()).or_default().push(i);
        }
        for indexes in rules.values_mut() {
            indexes.sort_by(|&a, &b| {
                let (a, b) = (&data.auto_rules[a], &data.auto_rules[b]);
                a.priority.cmp(&b.priority).then_with(|| a.id.cmp(&b.id))
            });
        }
        Directory {
            regions: index_by(&data.regions, |r| &r.code),
            organizations: index_by(&data.organizations, |o| &o.id),
            rules,
            data,
        }
    }

    pub fn data(&self) -> &DirectoryData {
        &self.data
    }

    pub fn version(&self) -> i64 {
        self.data.version
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.regions.get(code).map(|&i| &self.data.regions[i])
    }

    pub fn organization(&self, id: &str) -> Option<&Organization> {
        self.organizations.get(id).map(|&i| &self.data.organizations[i])
    }

    pub fn parent(&self, organization: &Organization) -> Option<&Organization> {
        if organization.parent_id.is_empty() { None } else { self.organization(&organization.parent_id) }
    }

    /// Whether `descendant` is `ancestor` or lies under it.
    pub fn is_within(&self, descendant: &str, ancestor: &str) -> bool {
        let mut current = self.organization(descendant);
        // The depth bound guards against a parent cycle that slipped into the data.
        for _ in 0..64 {
            match current {
                Some(org) if org.id == ancestor => return true,
                Some(org) => current = self.parent(org),
                None => return false,
            }
        }
        false
    }

    /// Organizations of `org_type` in `region_code`, connected ones first, then by id.
    pub fn of_type_in_region(&self, region_code: &str, org_type: OrgType) -> Vec<&Organization> {
        let mut found: Vec<&Organization> =
            self.data.organizations.iter().filter(|o| o.region_code == region_code && o.org_type == org_type).collect();
        found.sort_by(|a, b| b.connected.cmp(&a.connected).then_with(|| a.id.cmp(&b.id)));
        found
    }

    /// The organization's auto-rules in the order they are tried.
    pub fn rules_of(&self, organization_id: &str) -> impl Iterator<Item = &AutoRule> {
        self.rules.get(organization_id).into_iter().flatten().map(|&i| &self.data.auto_rules[i])
    }

    pub fn auto_rule(&self, id: &str) -> Option<&AutoRule> {
        self.data.auto_rules.iter().find(|r| r.id == id)
    }

    /// Whether `organization_id` has confirmed `step`.
    pub fn confirmed(&self, organization_id: &str, step: OnboardingStep) -> bool {
        self.data.onboarding.iter().any(|c| c.organization_id == organization_id && c.step == step)
    }

    /// The organization as the API shows it, with its onboarding confirmations.
    pub fn organization_proto(&self, organization: &Organization) -> pb::Organization {
        pb::Organization {
            training_done: self.confirmed(&organization.id, OnboardingStep::TrainingDone),
            cabinet_ready: self.confirmed(&organization.id, OnboardingStep::CabinetReady),
            ..organization.to_proto()
        }
    }

    /// Every organization under `organization_id`, breadth first (without itself).
    pub fn subordinates(&self, organization_id: &str) -> Vec<&Organization> {
        let mut children: HashMap<&str, Vec<&Organization>> = HashMap::new();
        for organization in &self.data.organizations {
            if !organization.parent_id.is_empty() {
                children.entry(organization.parent_id.as_str()).or_default().push(organization);
            }
        }
        let mut found: Vec<&Organization> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::from([organization_id]);
        let mut next = 0;
        let mut frontier: Vec<&str> = vec![organization_id];
        while next < frontier.len() {
            let parent = frontier[next];
            next += 1;
            for child in children.get(parent).into_iter().flatten() {
                // A parent cycle in the data must not loop.
                if seen.insert(child.id.as_str()) {
                    found.push(child);
                    frontier.push(child.id.as_str());
                }
            }
        }
        found
    }
}

/// Ids are chosen by people (seed files, admins) or generated (UUIDs): short, and safe in
/// URLs, logs and file names.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("must not be empty")
    } else if id.len() > 100 {
        Err("must be at most 100 characters")
    } else if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Err("may contain only latin letters, digits, '-', '_' and '.'")
    } else {
        Ok(())
    }
}

/// A fact's own period: 0 (the standard or fast-track period, which are calendar days) or up
/// to a year, in calendar or working days.
pub fn check_period(period_days: i32, working_days: bool) -> Result<(), &'static str> {
    if !(0..=365).contains(&period_days) {
        Err("period_days must be between 0 and 365")
    } else if period_days == 0 && working_days {
        Err("working days need a period of their own: the standard and fast-track periods are calendar days")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    /// Stored and seed-file names are a contract with existing rows and files.
    #[test]
    fn stored_names_round_trip() {
        let types: Vec<&str> = OrgType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "school",
                "college",
                "municipal_education_department",
                "regional_ministry",
                "regional_center",
                "regional_cabinet",
                "federal_agency",
                "clinic",
                "other",
            ]
        );
        for org_type in OrgType::ALL {
            assert_eq!(org_type.as_str().parse::<OrgType>(), Ok(*org_type));
            // serde (seed files, cached snapshots) writes the same name.
            assert_eq!(serde_json::to_string(org_type).unwrap(), format!("\"{}\"", org_type.as_str()));
            assert_eq!(OrgType::from_proto(org_type.to_proto() as i32), Some(*org_type));
        }
        assert!("School".parse::<OrgType>().is_err());

        let kinds: Vec<&str> = AddresseeKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ["picked", "regional", "federal"]);
        for kind in AddresseeKind::VARIANTS {
            assert_eq!(kind.as_str().parse::<AddresseeKind>(), Ok(*kind));
        }
        let federal = Addressee::Federal { organization_id: "fed".into() };
        assert_eq!(federal.kind(), "federal");
        assert!(serde_json::to_string(&federal).unwrap().contains("\"kind\":\"federal\""));

        let scopes: Vec<&str> = Scope::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["classifier", "directory"]);
        for scope in Scope::VARIANTS {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(*scope));
        }
    }
}
