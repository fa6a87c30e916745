//! Seed data: the regions, the classifier and the organizations directory, as human-editable
//! TOML under `deploy/seed/`. The copies built into the binary are loaded on first start; an
//! operator command (`pos seed`) can load them, or edited files, at any time with
//! [`load_seed`]. Loading is keyed by id, so loading twice never duplicates anything.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use pos_platform::db::Db;
use serde::Deserialize;

use crate::model::{Addressee, Category, Fact, OrgType, Organization, Region, Scope, Subcategory};
use crate::store::{self, OnConflict};

/// The seed files built into the binary.
pub const REGIONS_TOML: &str = include_str!("../../../deploy/seed/regions.toml");
pub const CLASSIFIER_TOML: &str = include_str!("../../../deploy/seed/classifier.toml");
pub const ORGANIZATIONS_TOML: &str = include_str!("../../../deploy/seed/organizations.toml");

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{file} is not valid seed TOML: {source}")]
    Parse { file: &'static str, source: Box<toml::de::Error> },
    #[error("seed data is inconsistent: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("failed to write the seed data: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionsFile {
    regions: Vec<Region>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierFile {
    #[serde(default)]
    categories: Vec<Category>,
    #[serde(default)]
    subcategories: Vec<Subcategory>,
    #[serde(default)]
    facts: Vec<Fact>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationsFile {
    #[serde(default)]
    organizations: Vec<Organization>,
}

/// Parsed, completed and checked seed data.
#[derive(Clone, Debug)]
pub struct Seed {
    pub regions: Vec<Region>,
    pub categories: Vec<Category>,
    pub subcategories: Vec<Subcategory>,
    pub facts: Vec<Fact>,
    pub organizations: Vec<Organization>,
}

/// Rows written by [`load_seed`], per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub regions: usize,
    pub organizations: usize,
    pub categories: usize,
    pub subcategories: usize,
    pub facts: usize,
}

impl SeedReport {
    pub fn total(&self) -> usize {
        self.regions + self.organizations + self.categories + self.subcategories + self.facts
    }
}

fn parse<T: for<'de> Deserialize<'de>>(file: &'static str, text: &str) -> Result<T, SeedError> {
    toml::from_str(text).map_err(|source| SeedError::Parse { file, source: Box::new(source) })
}

impl Seed {
    /// The seed data built into the binary.
    pub fn embedded() -> Result<Seed, SeedError> {
        Seed::parse(REGIONS_TOML, CLASSIFIER_TOML, ORGANIZATIONS_TOML)
    }

    /// Reads `regions.toml`, `classifier.toml` and `organizations.toml` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Seed, SeedError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| SeedError::Read { path, source })
        };
        Seed::parse(&read("regions.toml")?, &read("classifier.toml")?, &read("organizations.toml")?)
    }

    /// Parses the three files, gives every region without a seeded cabinet a generated one,
    /// and checks that everything refers to something that exists.
    pub fn parse(regions: &str, classifier: &str, organizations: &str) -> Result<Seed, SeedError> {
        let RegionsFile { regions } = parse("regions.toml", regions)?;
        let ClassifierFile { categories, subcategories, facts } = parse("classifier.toml", classifier)?;
        let OrganizationsFile { mut organizations } = parse("organizations.toml", organizations)?;
        let known: HashSet<String> = organizations.iter().map(|o| o.id.clone()).collect();
        for region in &regions {
            if !known.contains(&region.cabinet_organization_id) {
                organizations.push(generated_cabinet(region));
            }
        }
        let seed = Seed { regions, categories, subcategories, facts, organizations };
        seed.check()?;
        Ok(seed)
    }

    fn check(&self) -> Result<(), SeedError> {
        let mut problems = Vec::new();
        let mut unique = |kind: &str, ids: &mut dyn Iterator<Item = &str>| {
            let mut seen = HashSet::new();
            for id in ids {
                if let Err(why) = crate::model::check_id(id) {
                    problems.push(format!("{kind} {id:?}: {why}"));
                }
                if !seen.insert(id.to_owned()) {
                    problems.push(format!("{kind} {id:?} appears twice"));
                }
            }
        };
        unique("region", &mut self.regions.iter().map(|r| r.code.as_str()));
        unique("category", &mut self.categories.iter().map(|c| c.id.as_str()));
        unique("subcategory", &mut self.subcategories.iter().map(|s| s.id.as_str()));
        unique("fact", &mut self.facts.iter().map(|f| f.id.as_str()));
        unique("organization", &mut self.organizations.iter().map(|o| o.id.as_str()));

        let regions: HashSet<&str> = self.regions.iter().map(|r| r.code.as_str()).collect();
        let organizations: HashMap<&str, &Organization> =
            self.organizations.iter().map(|o| (o.id.as_str(), o)).collect();
        let categories: HashSet<&str> = self.categories.iter().map(|c| c.id.as_str()).collect();
        let subcategories: HashSet<&str> = self.subcategories.iter().map(|s| s.id.as_str()).collect();

        for region in &self.regions {
            if region.code.len() != 2 || !region.code.chars().all(|c| c.is_ascii_digit()) {
                problems.push(format!("region {:?}: the code must be two digits", region.code));
            }
            if region.name.trim().is_empty() {
                problems.push(format!("region {}: the name is empty", region.code));
            }
            if !region.time_zone.contains('/') {
                problems.push(format!("region {}: {:?} is not an IANA zone", region.code, region.time_zone));
            }
            match organizations.get(region.cabinet_organization_id.as_str()) {
                Some(cabinet) if cabinet.org_type == OrgType::RegionalCabinet && cabinet.region_code == region.code => {
                }
                Some(_) => problems.push(format!(
                    "region {}: its cabinet {} must be a regional_cabinet of the region",
                    region.code, region.cabinet_organization_id
                )),
                // `parse` generates every missing cabinet, so this only fires for hand-built seeds.
                None => problems.push(format!(
                    "region {}: its cabinet {} is not an organization",
                    region.code, region.cabinet_organization_id
                )),
            }
        }
        for subcategory in &self.subcategories {
            if !categories.contains(subcategory.category_id.as_str()) {
                problems.push(format!("subcategory {}: unknown category {}", subcategory.id, subcategory.category_id));
            }
        }
        for fact in &self.facts {
            if !subcategories.contains(fact.subcategory_id.as_str()) {
                problems.push(format!("fact {}: unknown subcategory {}", fact.id, fact.subcategory_id));
            }
            if let Addressee::Federal { organization_id } = &fact.addressee
                && !organizations.contains_key(organization_id.as_str())
            {
                problems.push(format!("fact {}: unknown federal body {organization_id}", fact.id));
            }
            if let Err(why) = crate::model::check_period(fact.period_days, fact.working_days) {
                problems.push(format!("fact {}: {why}", fact.id));
            }
            for code in fact.fast_track_regions.iter().chain(&fact.not_fast_track_regions) {
                if !regions.contains(code.as_str()) {
                    problems.push(format!("fact {}: unknown region {code} in its fast-track lists", fact.id));
                }
            }
        }
        for org in &self.organizations {
            if org.full_name.trim().is_empty() {
                problems.push(format!("organization {}: the full name is empty", org.id));
            }
            if org.region_code.is_empty() {
                if org.org_type != OrgType::FederalAgency {
                    problems.push(format!("organization {}: only federal bodies may have no region", org.id));
                }
            } else if !regions.contains(org.region_code.as_str()) {
                problems.push(format!("organization {}: unknown region {}", org.id, org.region_code));
            }
            if !org.parent_id.is_empty() && !organizations.contains_key(org.parent_id.as_str()) {
                problems.push(format!("organization {}: unknown parent {}", org.id, org.parent_id));
            }
            // Walk up: a cycle would send a not-connected organization's messages in circles.
            let mut seen = HashSet::from([org.id.as_str()]);
            let mut current: &Organization = org;
            while let Some(parent) = organizations.get(current.parent_id.as_str()) {
                if !seen.insert(parent.id.as_str()) {
                    problems.push(format!("organization {}: its parents form a cycle", org.id));
                    break;
                }
                current = *parent;
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(SeedError::Invalid(problems)) }
    }
}

/// The cabinet of a region whose directory is not seeded: connected, so that every appeal from
/// the region has somewhere to land until the region's own organizations are loaded.
fn generated_cabinet(region: &Region) -> Organization {
    Organization {
        id: region.cabinet_organization_id.clone(),
        full_name: format!("Региональный кабинет Платформы обратной связи: {}", region.name),
        short_name: format!("ЛКО региона: {}", region.name),
        address: String::new(),
        email: String::new(),
        region_code: region.code.clone(),
        parent_id: String::new(),
        org_type: OrgType::RegionalCabinet,
        connected: true,
    }
}

/// Writes `seed` into the routing database in one transaction and bumps the versions, so that
/// running services see it at once. With [`OnConflict::Keep`] rows that exist (perhaps edited by
/// an admin since) are left alone; with [`OnConflict::Update`] the seed overwrites them. Either
/// way nothing is duplicated.
pub async fn load_seed(db: &Db, seed: &Seed, on_conflict: OnConflict) -> Result<SeedReport, SeedError> {
    let mut tx = db.begin().await?;
    let mut report = SeedReport::default();
    for region in &seed.regions {
        report.regions += usize::from(store::upsert_region(&mut tx, region, on_conflict).await?);
    }
    for organization in &seed.organizations {
        report.organizations += usize::from(store::upsert_organization(&mut tx, organization, on_conflict).await?);
    }
    // Positions follow the files, so the classifier lists in the order its authors wrote it.
    for (position, category) in (1..).zip(&seed.categories) {
        report.categories += usize::from(store::upsert_category(&mut tx, category, position, on_conflict).await?);
    }
    for (position, subcategory) in (1..).zip(&seed.subcategories) {
        report.subcategories +=
            usize::from(store::upsert_subcategory(&mut tx, subcategory, position, on_conflict).await?);
    }
    for (position, fact) in (1..).zip(&seed.facts) {
        report.facts += usize::from(store::upsert_fact(&mut tx, fact, position, on_conflict).await?);
    }
    if report.regions + report.organizations > 0 {
        store::bump(&mut tx, Scope::Directory).await?;
    }
    if report.categories + report.subcategories + report.facts > 0 {
        store::bump(&mut tx, Scope::Classifier).await?;
    }
    tx.commit().await?;
    tracing::info!(
        regions = report.regions,
        organizations = report.organizations,
        categories = report.categories,
        subcategories = report.subcategories,
        facts = report.facts,
        "seed data loaded"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every zone the Russian Federation's regions use, from the tz database's zone1970.tab.
    const RUSSIAN_ZONES: &[&str] = &[
        "Europe/Kaliningrad",
        "Europe/Moscow",
        "Europe/Simferopol",
        "Europe/Kirov",
        "Europe/Volgograd",
        "Europe/Astrakhan",
        "Europe/Saratov",
        "Europe/Ulyanovsk",
        "Europe/Samara",
        "Asia/Yekaterinburg",
        "Asia/Omsk",
        "Asia/Novosibirsk",
        "Asia/Barnaul",
        "Asia/Tomsk",
        "Asia/Novokuznetsk",
        "Asia/Krasnoyarsk",
        "Asia/Irkutsk",
        "Asia/Chita",
        "Asia/Yakutsk",
        "Asia/Khandyga",
        "Asia/Vladivostok",
        "Asia/Ust-Nera",
        "Asia/Magadan",
        "Asia/Sakhalin",
        "Asia/Srednekolymsk",
        "Asia/Kamchatka",
        "Asia/Anadyr",
    ];

    #[test]
    fn embedded_seed_is_consistent_and_covers_every_region() {
        let seed = Seed::embedded().unwrap();
        assert_eq!(seed.regions.len(), 89);
        for region in &seed.regions {
            assert!(RUSSIAN_ZONES.contains(&region.time_zone.as_str()), "{}: {}", region.code, region.time_zone);
            assert_eq!(region.cabinet_organization_id, format!("cabinet-{}", region.code));
        }
        let zone = |code: &str| seed.regions.iter().find(|r| r.code == code).map(|r| r.time_zone.as_str());
        assert_eq!(zone("41"), Some("Asia/Kamchatka"));
        assert_eq!(zone("39"), Some("Europe/Kaliningrad"));
        assert_eq!(zone("16"), Some("Europe/Moscow"));
        assert_eq!(zone("02"), Some("Asia/Yekaterinburg"));
        assert_eq!(zone("87"), Some("Asia/Anadyr"));
        let name = |code: &str| seed.regions.iter().find(|r| r.code == code).map(|r| r.name.as_str());
        assert_eq!(name("93"), Some("Донецкая Народная Республика"));
        assert_eq!(name("94"), Some("Луганская Народная Республика"));
        assert_eq!(name("90"), Some("Запорожская область"));
        assert_eq!(name("95"), Some("Херсонская область"));
        assert_eq!(name("77"), Some("Москва"));
        // 87 regions get a generated cabinet; 41 and 16 have their own.
        let cabinets = seed.organizations.iter().filter(|o| o.org_type == OrgType::RegionalCabinet).count();
        assert_eq!(cabinets, 89);
        assert!(seed.organizations.iter().any(|o| o.id == "cabinet-41" && o.short_name == "ЦУР Камчатского края"));
        assert_eq!(seed.facts.len(), 13);
    }

    #[test]
    fn inconsistent_seeds_are_refused_with_every_problem() {
        let regions = r#"
            [[regions]]
            code = "41"
            name = "Камчатский край"
            time_zone = "Asia/Kamchatka"
            cabinet_organization_id = "cabinet-41"
        "#;
        let classifier = r#"
            [[categories]]
            id = "c"
            name = "C"
            [[subcategories]]
            id = "s"
            category_id = "missing"
            name = "S"
            [[facts]]
            id = "f"
            subcategory_id = "s"
            name = "F"
            addressee = { kind = "federal", organization_id = "nobody" }
            working_days = true
        "#;
        let organizations = r#"
            [[organizations]]
            id = "a"
            full_name = "A"
            region_code = "41"
            parent_id = "b"
            type = "school"
            [[organizations]]
            id = "b"
            full_name = "B"
            region_code = "41"
            parent_id = "a"
            type = "school"
        "#;
        let Err(SeedError::Invalid(problems)) = Seed::parse(regions, classifier, organizations) else {
            panic!("an inconsistent seed was accepted");
        };
        let all = problems.join("\n");
        assert!(all.contains("unknown category missing"), "{all}");
        assert!(all.contains("unknown federal body nobody"), "{all}");
        assert!(all.contains("working days"), "{all}");
        assert!(all.contains("cycle"), "{all}");
        let error = Seed::parse(regions, "facts = 3", organizations).unwrap_err();
        assert!(matches!(error, SeedError::Parse { file: "classifier.toml", .. }));
    }
}
