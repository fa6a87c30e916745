//! The addressee decision (docs/adr/0003-routing-resolution.md).
//!
//! 1. The fact's addressee rule names an organization: the one the applicant picked (of the
//!    required type), the region's organization of a type, or a federal body.
//! 2. When the rule cannot name one (unknown fact, nothing or the wrong thing picked, no such
//!    organization in the region), the applicant's region cabinet answers.
//! 3. An organization that is not connected hands the message to its nearest connected
//!    ancestor, ultimately to its region's cabinet.
//! 4. The organization's auto-rules, by priority, may delegate the message onward (to a
//!    subordinate organization or an executor); the delegate's own rules apply in turn.
//! 5. The period: the fact's own, else the fast-track period where the region makes the fact
//!    fast-track, else the standard period.
//!
//! The decision never fails: problems a caller could fix (an unknown fact, a wrong pick) are
//! reported beside it, so that the dry-run `Resolve` can refuse them while an appeal that
//! already arrived is still routed, with the reason in its explanation.
//!
//! The steps' reasons and the explanation are read by people (the cabinet's "почему сюда", the
//! applicant's appeal, `pos show`): they are in Russian and name organizations, facts and
//! regions by their names; an id appears, in square brackets, only where there is no name or
//! where staff need it to find the object (an auto-rule, an executor).

use std::collections::HashSet;

use pos_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::model::{Addressee, AutoRule, Classifier, Directory, Fact, OrgType, Organization};

/// The standard and fast-track periods, calendar days.
#[derive(Clone, Copy, Debug)]
pub struct Periods {
    pub standard_days: i32,
    pub fast_track_days: i32,
}

/// Who answers when even the applicant's region has no cabinet.
#[derive(Clone, Debug)]
pub struct Fallback {
    pub organization_id: String,
    pub time_zone: String,
}

/// What is being routed.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    /// The applicant's region.
    pub region_code: &'a str,
    pub fact_id: &'a str,
    /// Optional: checked against the fact's own when given.
    pub subcategory_id: &'a str,
    pub picked_organization_id: &'a str,
    pub text: &'a str,
}

/// Something wrong with the request itself, and the field to blame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    UnknownRegion { region_code: String },
    UnknownFact { fact_id: String },
    SubcategoryMismatch { given: String, fact_subcategory: String },
    PickedMissing { required: OrgType },
    PickedUnknown { id: String },
    PickedWrongType { id: String, actual: OrgType, required: OrgType },
}

impl Problem {
    /// The request field a caller has to fix.
    pub fn field(&self) -> &'static str {
        match self {
            Problem::UnknownRegion { .. } => "region_code",
            Problem::UnknownFact { .. } => "fact_id",
            Problem::SubcategoryMismatch { .. } => "subcategory_id",
            Problem::PickedMissing { .. } | Problem::PickedUnknown { .. } | Problem::PickedWrongType { .. } => {
                "picked_organization_id"
            }
        }
    }

    /// For the API caller (a field violation) and the logs.
    pub fn description(&self) -> String {
        match self {
            Problem::UnknownRegion { region_code } => format!("unknown region {region_code:?}"),
            Problem::UnknownFact { fact_id } => format!("unknown fact {fact_id:?}"),
            Problem::SubcategoryMismatch { given, fact_subcategory } => {
                format!("the fact belongs to subcategory {fact_subcategory:?}, not {given:?}")
            }
            Problem::PickedMissing { required } => {
                format!("the fact needs a picked organization of type {required}")
            }
            Problem::PickedUnknown { id } => format!("unknown organization {id:?}"),
            Problem::PickedWrongType { id, actual, required } => {
                format!("organization {id:?} is of type {actual}, the fact needs {required}")
            }
        }
    }

    /// For people reading the explanation of an appeal that arrived with the problem.
    pub fn explain(&self, classifier: &Classifier, directory: &Directory) -> String {
        match self {
            Problem::UnknownRegion { region_code } => format!("региона [{region_code}] нет в справочнике"),
            Problem::UnknownFact { fact_id } => format!("факта [{fact_id}] нет в классификаторе"),
            Problem::SubcategoryMismatch { given, fact_subcategory } => {
                let name = |id: &str| match classifier.subcategory(id) {
                    Some(subcategory) => quoted(&subcategory.name),
                    None => format!("[{id}]"),
                };
                format!(
                    "факт относится к подкатегории {}, а указана подкатегория {}",
                    name(fact_subcategory),
                    name(given)
                )
            }
            Problem::PickedMissing { required } => {
                format!("заявитель не выбрал организацию, а факт требует организацию типа «{}»", required.title())
            }
            Problem::PickedUnknown { id } => format!("выбранной организации [{id}] нет в справочнике"),
            Problem::PickedWrongType { id, actual, required } => {
                let picked = directory.organization(id).map_or_else(|| format!("[{id}]"), name);
                format!(
                    "выбрана организация {picked} типа «{}», а факт требует организацию типа «{}»",
                    actual.title(),
                    required.title()
                )
            }
        }
    }
}

/// The problems of an appeal that arrived with them, as the sentence its explanation ends with.
pub fn explain_problems(problems: &[Problem], classifier: &Classifier, directory: &Directory) -> String {
    let problems: Vec<String> = problems.iter().map(|p| p.explain(classifier, directory)).collect();
    format!("Ошибки в обращении: {}.", problems.join("; "))
}

/// Which part of the algorithm took a step. Stored (in a decision's JSON) in snake case by
/// serde; shown to callers (`ResolutionStep.rule`) in words by strum.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// The fact's addressee rule named an organization.
    #[strum(serialize = "addressee rule")]
    AddresseeRule,
    /// The rule could not name one; why.
    #[strum(serialize = "invalid addressee")]
    InvalidAddressee,
    /// The organization is not connected; the message goes up.
    #[strum(serialize = "not connected")]
    NotConnected,
    /// The region's cabinet answers.
    #[strum(serialize = "region cabinet")]
    RegionCabinet,
    /// Not even a region cabinet: the configured fallback answers.
    #[strum(serialize = "fallback")]
    Fallback,
    /// An auto-rule delegated the message.
    #[strum(serialize = "auto-rule")]
    AutoRule,
    /// An auto-rule matched but could not delegate.
    #[strum(serialize = "auto-rule skipped")]
    AutoRuleSkipped,
    /// How the review period was chosen.
    #[strum(serialize = "period")]
    Period,
}

impl StepRule {
    /// The name callers read in a resolution's steps.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One step of the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub rule: StepRule,
    /// The organization the step arrived at; empty when it names none.
    pub organization_id: String,
    pub reason: String,
    /// An auto-rule's step: the rule's details in `reason` are for its organization's staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rule: Option<RuleStep>,
}

/// Whose auto-rule took a step, and what everyone else reads of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStep {
    /// The organization the rule belongs to.
    pub organization_id: String,
    /// The step without the rule's id, conditions and executor; `None` for a rule that matched
    /// but changed nothing, which is left out altogether.
    pub public_reason: Option<String>,
}

/// The decision: who answers, by when, and why.
#[derive(Clone, Debug)]
pub struct Decision {
    pub organization: Organization,
    /// The zone of the addressee's region (the applicant's for federal bodies).
    pub time_zone: String,
    pub fact_id: String,
    /// The fact's subcategory and category in the classifier; empty for an unknown fact.
    pub subcategory_id: String,
    pub category_id: String,
    pub period_days: i32,
    pub working_days: bool,
    pub fast_track: bool,
    pub delegated_by_auto_rule: bool,
    pub auto_rule_id: String,
    pub target_executor_id: String,
    pub steps: Vec<Step>,
    pub explanation: String,
    /// Whether the rule's own addressee answers (false when a fallback took over).
    pub direct: bool,
}

impl Decision {
    /// The period as the SLA policy decides it, in place of the classifier's proposal: the
    /// period step says why, and the explanation follows.
    pub fn with_period(mut self, period_days: i32, working_days: bool, fast_track: bool, reason: String) -> Decision {
        (self.period_days, self.working_days, self.fast_track) = (period_days, working_days, fast_track);
        match self.steps.iter_mut().find(|s| s.rule == StepRule::Period) {
            Some(step) => step.reason = reason,
            None => self.steps.push(Step {
                rule: StepRule::Period,
                organization_id: String::new(),
                reason,
                auto_rule: None,
            }),
        }
        self.explanation = explain(&self.steps, &self.organization);
        self
    }

    /// The decision as read by a caller who may see the auto-rules of the organizations
    /// `sees_rules_of` accepts. Another organization's rule shows only whose rule sent the
    /// message where, not its id, conditions or executor; one that matched but changed
    /// nothing does not show at all.
    pub fn as_seen_by(mut self, sees_rules_of: impl Fn(&str) -> bool) -> Decision {
        let last_rule_owner = self
            .steps
            .iter()
            .rev()
            .find(|s| s.rule == StepRule::AutoRule)
            .and_then(|s| s.auto_rule.as_ref())
            .map(|r| r.organization_id.clone());
        if last_rule_owner.is_some_and(|owner| !sees_rules_of(&owner)) {
            self.auto_rule_id.clear();
            self.target_executor_id.clear();
        }
        self.steps.retain_mut(|step| match step.auto_rule.take() {
            Some(rule) if !sees_rules_of(&rule.organization_id) => match rule.public_reason {
                Some(public) => {
                    step.reason = public;
                    true
                }
                None => false,
            },
            kept => {
                step.auto_rule = kept;
                true
            }
        });
        self.explanation = explain(&self.steps, &self.organization);
        self
    }

    /// The explanation everyone may read: the applicant and the addressee's staff alike.
    pub fn public_explanation(&self) -> String {
        self.clone().as_seen_by(|_| false).explanation
    }

    pub fn to_proto(&self, directory: &Directory) -> pb::Resolution {
        pb::Resolution {
            organization: Some(self.organization.to_ref()),
            fact_id: self.fact_id.clone(),
            period_days: self.period_days,
            working_days: self.working_days,
            fast_track: self.fast_track,
            delegated_by_auto_rule: self.delegated_by_auto_rule,
            auto_rule_id: self.auto_rule_id.clone(),
            target_executor_id: self.target_executor_id.clone(),
            steps: self
                .steps
                .iter()
                .map(|step| pb::ResolutionStep {
                    rule: step.rule.as_str().to_owned(),
                    organization: directory.organization(&step.organization_id).map(Organization::to_ref),
                    reason: step.reason.clone(),
                })
                .collect(),
            explanation: self.explanation.clone(),
            time_zone: self.time_zone.clone(),
        }
    }
}

/// The decision and what was wrong with the request.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decision: Decision,
    pub problems: Vec<Problem>,
}

/// How many auto-rule delegations one message may go through: enough for a cabinet → ministry →
/// department → school chain, and a bound for rules that point at each other.
const MAX_DELEGATIONS: usize = 8;

/// Decides who answers `request`.
pub fn resolve(
    classifier: &Classifier,
    directory: &Directory,
    periods: Periods,
    fallback: &Fallback,
    request: &Request<'_>,
) -> Outcome {
    Resolver { classifier, directory, fallback, steps: Vec::new(), problems: Vec::new() }.run(periods, request)
}

struct Resolver<'a> {
    classifier: &'a Classifier,
    directory: &'a Directory,
    fallback: &'a Fallback,
    steps: Vec<Step>,
    problems: Vec<Problem>,
}

/// The steps' reasons, each a sentence, then where the message goes.
fn explain(steps: &[Step], organization: &Organization) -> String {
    let mut text = String::new();
    for step in steps {
        text.push_str(&step.reason);
        text.push_str(". ");
    }
    text.push_str(&format!("Обращение направлено в {}.", name(organization)));
    text
}

/// A name in «quotes», unless it carries quotes of its own (`МБОУ «Школа № 1»`).
pub fn quoted(name: &str) -> String {
    if name.contains(['«', '"']) { name.to_owned() } else { format!("«{name}»") }
}

/// An organization as people know it: its short name, else its full name.
pub fn name(org: &Organization) -> String {
    quoted(org.display_name())
}

/// "1 календарный день", "2 рабочих дня", "30 календарных дней".
pub fn days(count: i32, working: bool) -> String {
    let (one, few, many) = if working {
        ("рабочий день", "рабочих дня", "рабочих дней")
    } else {
        ("календарный день", "календарных дня", "календарных дней")
    };
    let word = match (count.rem_euclid(100), count.rem_euclid(10)) {
        (11..=14, _) => many,
        (_, 1) => one,
        (_, 2..=4) => few,
        _ => many,
    };
    format!("{count} {word}")
}

/// A region by its name, or its code where the directory does not know it.
pub fn region_name(directory: &Directory, region_code: &str) -> String {
    match directory.region(region_code) {
        Some(region) => quoted(&region.name),
        None => format!("[{region_code}]"),
    }
}

/// A fact by its name in the classifier, or its id where the classifier does not know it.
fn fact_name(classifier: &Classifier, fact_id: &str) -> String {
    match classifier.fact(fact_id) {
        Some(fact) => quoted(&fact.name),
        None => format!("[{fact_id}]"),
    }
}

/// What an auto-rule matches: "все обращения", "факт «…»", "ключевые слова «…», «…»".
fn rule_condition(classifier: &Classifier, rule: &AutoRule) -> String {
    let keywords = || rule.keywords.iter().map(|k| format!("«{k}»")).collect::<Vec<_>>().join(", ");
    match (rule.fact_id.is_empty(), rule.keywords.is_empty()) {
        (true, true) => "все обращения".to_owned(),
        (false, true) => format!("факт {}", fact_name(classifier, &rule.fact_id)),
        (true, false) => format!("ключевые слова {}", keywords()),
        (false, false) => format!("факт {} и ключевые слова {}", fact_name(classifier, &rule.fact_id), keywords()),
    }
}

impl<'a> Resolver<'a> {
    fn step(&mut self, rule: StepRule, organization: Option<&Organization>, reason: String) {
        self.steps.push(Step {
            rule,
            organization_id: organization.map(|o| o.id.clone()).unwrap_or_default(),
            reason,
            auto_rule: None,
        });
    }

    /// A step of `owner`'s auto-rule: `reason` for the owner's staff, `public_reason` for
    /// everyone else.
    fn rule_step(
        &mut self,
        rule: StepRule,
        organization: &Organization,
        owner: &Organization,
        reason: String,
        public_reason: Option<String>,
    ) {
        self.steps.push(Step {
            rule,
            organization_id: organization.id.clone(),
            reason,
            auto_rule: Some(RuleStep { organization_id: owner.id.clone(), public_reason }),
        });
    }

    fn run(mut self, periods: Periods, request: &Request<'_>) -> Outcome {
        let classifier = self.classifier;
        let region_known = self.directory.region(request.region_code).is_some();
        if !region_known {
            self.problems.push(Problem::UnknownRegion { region_code: request.region_code.to_owned() });
        }
        let fact = classifier.fact(request.fact_id);
        match fact {
            None => self.problems.push(Problem::UnknownFact { fact_id: request.fact_id.to_owned() }),
            Some(fact) if !request.subcategory_id.is_empty() && request.subcategory_id != fact.subcategory_id => {
                self.problems.push(Problem::SubcategoryMismatch {
                    given: request.subcategory_id.to_owned(),
                    fact_subcategory: fact.subcategory_id.clone(),
                });
            }
            Some(_) => {}
        }

        // 1–2: the rule's addressee, or the applicant's region cabinet.
        let named = match fact {
            Some(fact) => self.named_by_rule(fact, request),
            None => {
                self.step(
                    StepRule::InvalidAddressee,
                    None,
                    format!("Факта [{}] нет в классификаторе, адресат не определён", request.fact_id),
                );
                None
            }
        };
        let direct = named.is_some();
        let addressee = match named {
            Some(org) => org.clone(),
            None => self.region_cabinet(request.region_code),
        };

        // 3: up to the nearest connected ancestor.
        let mut current = self.connected(addressee, request.region_code);
        let connected_directly = self.steps.iter().all(|s| s.rule != StepRule::NotConnected);

        // 4: auto-rules.
        let lowercase_text = request.text.to_lowercase();
        let mut delegated_by_auto_rule = false;
        let mut auto_rule_id = String::new();
        let mut target_executor_id = String::new();
        let mut visited: HashSet<String> = HashSet::from([current.id.clone()]);
        'delegations: for _ in 0..MAX_DELEGATIONS {
            let rules: Vec<_> =
                self.directory.rules_of(&current.id).filter(|r| r.matches(request.fact_id, &lowercase_text)).collect();
            for rule in rules {
                let target = self.directory.organization(&rule.target_organization_id);
                let skip = match target {
                    None => Some(format!("организации-получателя [{}] нет в справочнике", rule.target_organization_id)),
                    Some(target) if !target.connected => {
                        Some(format!("организация-получатель {} не подключена к платформе", name(target)))
                    }
                    Some(target) if target.id != current.id && visited.contains(&target.id) => {
                        Some(format!("организация-получатель {} уже передавала это обращение дальше", name(target)))
                    }
                    Some(_) => None,
                };
                if let Some(why) = skip {
                    let reason = format!(
                        "Авто-правило [{}] организации {} подошло, но не применено: {why}",
                        rule.id,
                        name(&current)
                    );
                    self.rule_step(StepRule::AutoRuleSkipped, &current, &current, reason, None);
                    continue;
                }
                let Some(target) = target else { continue };
                delegated_by_auto_rule = true;
                auto_rule_id = rule.id.clone();
                target_executor_id = rule.target_executor_id.clone();
                let executor = if rule.target_executor_id.is_empty() {
                    String::new()
                } else {
                    format!(", исполнитель [{}]", rule.target_executor_id)
                };
                let rule_of = format!(
                    "Авто-правило [{}] организации {} (приоритет {}, условие: {})",
                    rule.id,
                    name(&current),
                    rule.priority,
                    rule_condition(classifier, rule)
                );
                let (reason, public_reason) = if target.id == current.id {
                    (
                        format!("{rule_of} оставляет обращение в организации{executor}"),
                        format!("По авто-правилу организации {} обращение передано её исполнителю", name(&current)),
                    )
                } else {
                    (
                        format!("{rule_of} передаёт обращение в {}{executor}", name(target)),
                        format!("По авто-правилу организации {} обращение передано в {}", name(&current), name(target)),
                    )
                };
                self.rule_step(StepRule::AutoRule, target, &current, reason, Some(public_reason));
                if target.id == current.id {
                    // Delegation to an executor of the same organization ends the chain.
                    break 'delegations;
                }
                current = target.clone();
                visited.insert(current.id.clone());
                continue 'delegations;
            }
            break;
        }

        // 5: the period.
        let fast_track = fact.is_some_and(|f| f.fast_track_in(request.region_code));
        let (period_days, working_days) = self.period(fact, fast_track, periods, request.region_code);

        let time_zone = self.time_zone(&current, request.region_code);
        let subcategory_id = fact.map(|f| f.subcategory_id.clone()).unwrap_or_default();
        let category_id = classifier.subcategory(&subcategory_id).map(|s| s.category_id.clone()).unwrap_or_default();
        let explanation = explain(&self.steps, &current);
        Outcome {
            decision: Decision {
                organization: current,
                time_zone,
                fact_id: request.fact_id.to_owned(),
                subcategory_id,
                category_id,
                period_days,
                working_days,
                fast_track,
                delegated_by_auto_rule,
                auto_rule_id,
                target_executor_id,
                steps: self.steps,
                explanation,
                direct: direct && connected_directly,
            },
            problems: self.problems,
        }
    }

    /// The organization the fact's rule names, if it can name one.
    fn named_by_rule(&mut self, fact: &Fact, request: &Request<'_>) -> Option<&'a Organization> {
        let directory = self.directory;
        let fact_is = format!("Адресат факта {}", quoted(&fact.name));
        match &fact.addressee {
            Addressee::Picked { organization_type } => {
                let required = *organization_type;
                let picked_is = format!("{fact_is} — выбранная заявителем организация типа «{}»", required.title());
                if request.picked_organization_id.is_empty() {
                    self.problems.push(Problem::PickedMissing { required });
                    self.step(StepRule::InvalidAddressee, None, format!("{picked_is}, но заявитель её не выбрал"));
                    return None;
                }
                match directory.organization(request.picked_organization_id) {
                    None => {
                        self.problems.push(Problem::PickedUnknown { id: request.picked_organization_id.to_owned() });
                        let reason = format!(
                            "{picked_is}, но выбранной организации [{}] нет в справочнике",
                            request.picked_organization_id
                        );
                        self.step(StepRule::InvalidAddressee, None, reason);
                        None
                    }
                    Some(picked) if picked.org_type != required => {
                        self.problems.push(Problem::PickedWrongType {
                            id: picked.id.clone(),
                            actual: picked.org_type,
                            required,
                        });
                        let reason = format!(
                            "{picked_is}, но заявитель выбрал {} — организацию типа «{}»",
                            name(picked),
                            picked.org_type.title()
                        );
                        self.step(StepRule::InvalidAddressee, Some(picked), reason);
                        None
                    }
                    Some(picked) => {
                        self.step(StepRule::AddresseeRule, Some(picked), format!("{picked_is}: {}", name(picked)));
                        Some(picked)
                    }
                }
            }
            Addressee::Regional { organization_type } => {
                let candidates = directory.of_type_in_region(request.region_code, *organization_type);
                let regional_is = format!(
                    "{fact_is} — организация типа «{}» в регионе {}",
                    organization_type.title(),
                    region_name(directory, request.region_code)
                );
                match candidates.first() {
                    Some(&org) => {
                        let others = if candidates.len() > 1 {
                            format!(
                                " (первая из {}: сначала подключённые к платформе, затем по идентификатору)",
                                candidates.len()
                            )
                        } else {
                            String::new()
                        };
                        self.step(StepRule::AddresseeRule, Some(org), format!("{regional_is}: {}{others}", name(org)));
                        Some(org)
                    }
                    None => {
                        let reason = format!("{regional_is}, но такой организации в регионе нет");
                        self.step(StepRule::InvalidAddressee, None, reason);
                        None
                    }
                }
            }
            Addressee::Federal { organization_id } => match directory.organization(organization_id) {
                Some(org) => {
                    self.step(
                        StepRule::AddresseeRule,
                        Some(org),
                        format!("{fact_is} — федеральный орган {}", name(org)),
                    );
                    Some(org)
                }
                None => {
                    let reason = format!("{fact_is} — федеральный орган [{organization_id}], но его нет в справочнике");
                    self.step(StepRule::InvalidAddressee, None, reason);
                    None
                }
            },
        }
    }

    /// The cabinet of `region_code`, or the configured fallback when there is none.
    fn region_cabinet(&mut self, region_code: &str) -> Organization {
        let directory = self.directory;
        let cabinet = directory.region(region_code).and_then(|r| directory.organization(&r.cabinet_organization_id));
        match cabinet {
            Some(cabinet) => {
                let reason = format!(
                    "Вместо адресата обращение рассматривает кабинет региона {}: {}",
                    region_name(directory, region_code),
                    name(cabinet)
                );
                self.step(StepRule::RegionCabinet, Some(cabinet), reason);
                cabinet.clone()
            }
            None => {
                let why = match directory.region(region_code) {
                    None => format!("Региона [{region_code}] нет в справочнике"),
                    Some(region) => format!(
                        "Кабинета [{}] региона {} нет в справочнике",
                        region.cabinet_organization_id,
                        quoted(&region.name)
                    ),
                };
                match directory.organization(&self.fallback.organization_id) {
                    Some(org) => {
                        let reason =
                            format!("{why}; обращение рассматривает резервный кабинет платформы {}", name(org));
                        self.step(StepRule::Fallback, Some(org), reason);
                        org.clone()
                    }
                    None => {
                        // Misconfigured even the last resort: name it anyway, so the appeal is
                        // still handed on (and found by its id) rather than lost.
                        tracing::error!(
                            organization_id = %self.fallback.organization_id,
                            "fallback organization is not in the directory"
                        );
                        let reason = format!(
                            "{why}; обращение рассматривает резервный кабинет платформы [{}], хотя его нет в \
                             справочнике",
                            self.fallback.organization_id
                        );
                        let org = Organization {
                            id: self.fallback.organization_id.clone(),
                            full_name: self.fallback.organization_id.clone(),
                            short_name: String::new(),
                            address: String::new(),
                            email: String::new(),
                            region_code: String::new(),
                            parent_id: String::new(),
                            org_type: OrgType::Other,
                            connected: true,
                        };
                        self.step(StepRule::Fallback, None, reason);
                        org
                    }
                }
            }
        }
    }

    /// `org` if connected, else its nearest connected ancestor, else its region's cabinet.
    fn connected(&mut self, org: Organization, applicant_region: &str) -> Organization {
        let directory = self.directory;
        let mut current = org;
        let mut visited = HashSet::new();
        while !current.connected {
            visited.insert(current.id.clone());
            match directory.parent(&current).filter(|p| !visited.contains(&p.id)) {
                Some(parent) => {
                    let reason = format!(
                        "Организация {} не подключена к платформе, обращение передано вышестоящей организации {}",
                        name(&current),
                        name(parent)
                    );
                    self.step(StepRule::NotConnected, Some(parent), reason);
                    current = parent.clone();
                }
                None => {
                    let reason = format!(
                        "Организация {} не подключена к платформе, и подключённой вышестоящей организации у неё нет",
                        name(&current)
                    );
                    self.step(StepRule::NotConnected, None, reason);
                    let region = if current.region_code.is_empty() { applicant_region } else { &current.region_code };
                    let cabinet = self.region_cabinet(region);
                    // The cabinet is the last resort: it answers even if it is marked otherwise.
                    return cabinet;
                }
            }
        }
        current
    }

    fn period(&mut self, fact: Option<&Fact>, fast_track: bool, periods: Periods, region_code: &str) -> (i32, bool) {
        let (days_count, working, reason) = match fact {
            Some(fact) if fact.period_days > 0 => (
                fact.period_days,
                fact.working_days,
                format!(
                    "Срок — {}, установлен для факта {}",
                    days(fact.period_days, fact.working_days),
                    quoted(&fact.name)
                ),
            ),
            Some(fact) if fast_track => (
                periods.fast_track_days,
                false,
                format!(
                    "Срок — {}: факт {} в регионе {} относится к фаст-треку",
                    days(periods.fast_track_days, false),
                    quoted(&fact.name),
                    region_name(self.directory, region_code)
                ),
            ),
            Some(_) | None => (
                periods.standard_days,
                false,
                format!("Срок — {}, стандартный срок рассмотрения", days(periods.standard_days, false)),
            ),
        };
        self.step(StepRule::Period, None, reason);
        (days_count, working)
    }

    /// Deadlines end at local midnight of the addressee's region. Federal bodies have no
    /// region of their own; they answer the applicant, so the applicant's region's day counts.
    fn time_zone(&self, addressee: &Organization, applicant_region: &str) -> String {
        let region = if addressee.region_code.is_empty() { applicant_region } else { &addressee.region_code };
        self.directory
            .region(region)
            .or_else(|| self.directory.region(applicant_region))
            .map(|r| r.time_zone.clone())
            .unwrap_or_else(|| self.fallback.time_zone.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AutoRule, Category, ClassifierData, DirectoryData, Region, Subcategory};

    /// What callers read in a resolution's steps, and the snake case stored decisions carry.
    #[test]
    fn step_rule_names_round_trip() {
        use strum::VariantArray;
        let shown: Vec<&str> = StepRule::VARIANTS.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            shown,
            [
                "addressee rule",
                "invalid addressee",
                "not connected",
                "region cabinet",
                "fallback",
                "auto-rule",
                "auto-rule skipped",
                "period",
            ]
        );
        for rule in StepRule::VARIANTS {
            assert_eq!(rule.as_str().parse::<StepRule>(), Ok(*rule));
            let stored = serde_json::to_string(rule).unwrap();
            assert_eq!(serde_json::from_str::<StepRule>(&stored).unwrap(), *rule);
        }
        assert_eq!(serde_json::to_string(&StepRule::AutoRuleSkipped).unwrap(), "\"auto_rule_skipped\"");
        // Decisions stored before steps named their auto-rule read as steps of no rule.
        let stored: Step =
            serde_json::from_str(r#"{"rule":"addressee_rule","organization_id":"41-kcioko","reason":"why"}"#).unwrap();
        assert_eq!(stored.auto_rule, None);
        assert!(!serde_json::to_string(&stored).unwrap().contains("auto_rule"));
    }

    fn org(id: &str, region: &str, parent: &str, org_type: OrgType, connected: bool) -> Organization {
        Organization {
            id: id.into(),
            full_name: format!("Full {id}"),
            short_name: format!("Short {id}"),
            address: String::new(),
            email: String::new(),
            region_code: region.into(),
            parent_id: parent.into(),
            org_type,
            connected,
        }
    }

    fn fact(id: &str, addressee: Addressee, period_days: i32) -> Fact {
        Fact {
            id: id.into(),
            subcategory_id: "sub".into(),
            name: id.into(),
            addressee,
            period_days,
            working_days: false,
            fast_track_default: false,
            fast_track_regions: Vec::new(),
            not_fast_track_regions: Vec::new(),
            active: true,
        }
    }

    fn rule(id: &str, org: &str, priority: i32, fact_id: &str, keywords: &[&str], target: &str) -> AutoRule {
        AutoRule {
            id: id.into(),
            organization_id: org.into(),
            priority,
            fact_id: fact_id.into(),
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            target_organization_id: target.into(),
            target_executor_id: String::new(),
            active: true,
        }
    }

    fn classifier() -> Classifier {
        let mut diary = fact("diary", Addressee::Regional { organization_type: OrgType::RegionalCenter }, 0);
        diary.fast_track_default = true;
        diary.not_fast_track_regions = vec!["16".into()];
        let mut meals = fact("meals", Addressee::Picked { organization_type: OrgType::School }, 0);
        meals.fast_track_regions = vec!["41".into()];
        let mut working = fact("working", Addressee::Regional { organization_type: OrgType::RegionalMinistry }, 21);
        working.working_days = true;
        Classifier::new(ClassifierData {
            version: 1,
            categories: vec![Category { id: "cat".into(), name: "Cat".into(), active: true }],
            subcategories: vec![Subcategory {
                id: "sub".into(),
                category_id: "cat".into(),
                name: "Sub".into(),
                active: true,
            }],
            facts: vec![
                fact("school", Addressee::Picked { organization_type: OrgType::School }, 2),
                fact("federal", Addressee::Federal { organization_id: "fed".into() }, 2),
                diary,
                meals,
                working,
            ],
        })
    }

    fn directory(rules: Vec<AutoRule>) -> Directory {
        Directory::new(DirectoryData {
            version: 1,
            regions: vec![
                Region {
                    code: "41".into(),
                    name: "K".into(),
                    time_zone: "Asia/Kamchatka".into(),
                    cabinet_organization_id: "cab41".into(),
                },
                Region {
                    code: "16".into(),
                    name: "T".into(),
                    time_zone: "Europe/Moscow".into(),
                    cabinet_organization_id: "cab16".into(),
                },
                Region {
                    code: "77".into(),
                    name: "M".into(),
                    time_zone: "Europe/Moscow".into(),
                    cabinet_organization_id: "missing".into(),
                },
            ],
            organizations: vec![
                org("fed", "", "", OrgType::FederalAgency, true),
                org("fallback", "", "", OrgType::FederalAgency, true),
                org("cab41", "41", "", OrgType::RegionalCabinet, true),
                org("cab16", "16", "", OrgType::RegionalCabinet, true),
                org("min41", "41", "cab41", OrgType::RegionalMinistry, true),
                org("center41", "41", "min41", OrgType::RegionalCenter, true),
                org("dept41", "41", "min41", OrgType::MunicipalEducationDepartment, true),
                org("dept41-off", "41", "min41", OrgType::MunicipalEducationDepartment, false),
                org("school41", "41", "dept41", OrgType::School, true),
                org("school41-off", "41", "dept41", OrgType::School, false),
                org("school41-deep", "41", "dept41-off", OrgType::School, false),
                org("orphan41-off", "41", "", OrgType::School, false),
                org("college41", "41", "min41", OrgType::College, true),
                org("school16", "16", "", OrgType::School, true),
            ],
            auto_rules: rules,
            onboarding: Vec::new(),
        })
    }

    fn run(directory: &Directory, region: &str, fact: &str, picked: &str, text: &str) -> Outcome {
        let request =
            Request { region_code: region, fact_id: fact, subcategory_id: "", picked_organization_id: picked, text };
        resolve(
            &classifier(),
            directory,
            Periods { standard_days: 30, fast_track_days: 10 },
            &Fallback { organization_id: "fallback".into(), time_zone: "Europe/Moscow".into() },
            &request,
        )
    }

    #[test]
    fn picked_connected_school_answers_itself() {
        let outcome = run(&directory(vec![]), "41", "school", "school41", "");
        assert!(outcome.problems.is_empty());
        let d = outcome.decision;
        assert_eq!(d.organization.id, "school41");
        assert!(d.direct);
        assert_eq!((d.period_days, d.working_days, d.fast_track), (2, false, false));
        assert_eq!(d.time_zone, "Asia/Kamchatka");
        assert_eq!((d.subcategory_id.as_str(), d.category_id.as_str()), ("sub", "cat"));
        assert_eq!(d.steps[0].rule, StepRule::AddresseeRule);
    }

    #[test]
    fn not_connected_goes_to_the_nearest_connected_ancestor() {
        let d = run(&directory(vec![]), "41", "school", "school41-off", "").decision;
        assert_eq!(d.organization.id, "dept41");
        assert!(!d.direct);
        let d = run(&directory(vec![]), "41", "school", "school41-deep", "").decision;
        assert_eq!(d.organization.id, "min41", "two levels up: {}", d.explanation);
        assert_eq!(d.steps.iter().filter(|s| s.rule == StepRule::NotConnected).count(), 2);
        let d = run(&directory(vec![]), "41", "school", "orphan41-off", "").decision;
        assert_eq!(d.organization.id, "cab41", "no ancestor: the region cabinet");
        assert!(d.steps.iter().any(|s| s.rule == StepRule::RegionCabinet));
    }

    #[test]
    fn wrong_or_missing_pick_is_a_problem_and_the_region_cabinet_answers() {
        let outcome = run(&directory(vec![]), "41", "school", "college41", "");
        assert_eq!(outcome.problems.len(), 1);
        assert_eq!(outcome.problems[0].field(), "picked_organization_id");
        assert_eq!(outcome.decision.organization.id, "cab41");
        let explanation = &outcome.decision.explanation;
        assert!(
            explanation.contains("заявитель выбрал «Short college41» — организацию типа «колледж»"),
            "{explanation}"
        );
        let outcome = run(&directory(vec![]), "41", "school", "", "");
        assert!(matches!(outcome.problems[..], [Problem::PickedMissing { required: OrgType::School }]));
        let outcome = run(&directory(vec![]), "41", "school", "nope", "");
        assert!(matches!(&outcome.problems[..], [Problem::PickedUnknown { id }] if id == "nope"));
        assert_eq!(outcome.decision.organization.id, "cab41");
    }

    #[test]
    fn picked_organization_of_another_region_keeps_its_own_zone() {
        let d = run(&directory(vec![]), "41", "school", "school16", "").decision;
        assert_eq!(d.organization.id, "school16");
        assert_eq!(d.time_zone, "Europe/Moscow");
    }

    #[test]
    fn unknown_fact_and_region_still_route() {
        let outcome = run(&directory(vec![]), "41", "nope", "", "");
        assert!(matches!(&outcome.problems[..], [Problem::UnknownFact { .. }]));
        assert_eq!(outcome.decision.organization.id, "cab41");
        assert_eq!(outcome.decision.period_days, 30);
        assert!(outcome.decision.explanation.contains("Факта [nope] нет в классификаторе"));

        let outcome = run(&directory(vec![]), "99", "nope", "", "");
        assert_eq!(outcome.problems.len(), 2);
        assert_eq!(outcome.decision.organization.id, "fallback");
        assert_eq!(outcome.decision.time_zone, "Europe/Moscow");

        // A region whose cabinet is missing from the directory.
        let outcome = run(&directory(vec![]), "77", "diary", "", "");
        assert_eq!(outcome.decision.organization.id, "fallback");
        assert!(outcome.decision.steps.iter().any(|s| s.rule == StepRule::Fallback));
    }

    #[test]
    fn federal_body_takes_the_applicants_zone() {
        let d = run(&directory(vec![]), "41", "federal", "school41", "").decision;
        assert_eq!(d.organization.id, "fed");
        assert_eq!(d.time_zone, "Asia/Kamchatka");
        let d = run(&directory(vec![]), "16", "federal", "", "").decision;
        assert_eq!(d.time_zone, "Europe/Moscow");
    }

    #[test]
    fn fast_track_and_periods_are_decided_per_region() {
        let d = run(&directory(vec![]), "41", "diary", "", "").decision;
        assert_eq!(d.organization.id, "center41");
        assert_eq!((d.period_days, d.fast_track), (10, true));
        // Region 16 opts out, and has no regional center: its cabinet answers.
        let d = run(&directory(vec![]), "16", "diary", "", "").decision;
        assert_eq!((d.organization.id.as_str(), d.period_days, d.fast_track), ("cab16", 30, false));
        // Meals are fast-track only in 41.
        assert!(run(&directory(vec![]), "41", "meals", "school41", "").decision.fast_track);
        assert!(!run(&directory(vec![]), "16", "meals", "school16", "").decision.fast_track);
        let d = run(&directory(vec![]), "41", "working", "", "").decision;
        assert_eq!((d.organization.id.as_str(), d.period_days, d.working_days), ("min41", 21, true));
    }

    #[test]
    fn auto_rules_delegate_by_priority_fact_and_keywords() {
        let rules = vec![
            rule("r-late", "center41", 20, "", &[], "college41"),
            rule("r-keyword", "center41", 10, "", &["Пароль"], "school41"),
            rule("r-other-fact", "center41", 1, "meals", &[], "dept41"),
        ];
        let directory = directory(rules);
        let d = run(&directory, "41", "diary", "", "Не помню пароль от дневника").decision;
        assert_eq!(d.organization.id, "school41");
        assert!(d.delegated_by_auto_rule);
        assert_eq!(d.auto_rule_id, "r-keyword");
        let d = run(&directory, "41", "diary", "", "Не вижу оценки").decision;
        assert_eq!(d.auto_rule_id, "r-late", "the keyword rule does not match, the catch-all does");
        assert_eq!(d.organization.id, "college41");
    }

    #[test]
    fn auto_rules_skip_unusable_targets_and_chain_without_loops() {
        let mut to_executor = rule("r-exec", "dept41", 5, "", &[], "dept41");
        to_executor.target_executor_id = "exec-7".into();
        let rules = vec![
            rule("r-off", "center41", 1, "", &[], "school41-off"),
            rule("r-dept", "center41", 2, "", &[], "dept41"),
            to_executor,
            rule("r-loop", "school41", 1, "", &[], "center41"),
        ];
        let d = run(&directory(rules), "41", "diary", "", "").decision;
        assert_eq!(d.organization.id, "dept41");
        assert_eq!(d.auto_rule_id, "r-exec");
        assert_eq!(d.target_executor_id, "exec-7");
        assert!(d.steps.iter().any(|s| s.rule == StepRule::AutoRuleSkipped));

        let rules = vec![rule("a", "center41", 1, "", &[], "school41"), rule("b", "school41", 1, "", &[], "center41")];
        let d = run(&directory(rules), "41", "diary", "", "").decision;
        assert_eq!(d.organization.id, "school41", "the loop back is skipped: {}", d.explanation);
    }

    #[test]
    fn inactive_rules_do_not_match() {
        let mut inactive = rule("r", "center41", 1, "", &[], "school41");
        inactive.active = false;
        let d = run(&directory(vec![inactive]), "41", "diary", "", "").decision;
        assert_eq!(d.organization.id, "center41");
        assert!(!d.delegated_by_auto_rule);
    }

    #[test]
    fn days_agree_with_their_number() {
        let shown: Vec<String> = [1, 2, 4, 5, 10, 11, 14, 21, 22, 25, 30, 101, 111].map(|n| days(n, false)).to_vec();
        assert_eq!(
            shown,
            [
                "1 календарный день",
                "2 календарных дня",
                "4 календарных дня",
                "5 календарных дней",
                "10 календарных дней",
                "11 календарных дней",
                "14 календарных дней",
                "21 календарный день",
                "22 календарных дня",
                "25 календарных дней",
                "30 календарных дней",
                "101 календарный день",
                "111 календарных дней",
            ]
        );
        assert_eq!(days(2, true), "2 рабочих дня");
        assert_eq!(days(21, true), "21 рабочий день");
    }

    #[test]
    fn names_keep_their_own_quotes() {
        assert_eq!(quoted("Рособрнадзор"), "«Рособрнадзор»");
        assert_eq!(quoted("МБОУ «Средняя школа № 45»"), "МБОУ «Средняя школа № 45»");
        assert_eq!(quoted("КГАУ \"КЦИОКО\""), "КГАУ \"КЦИОКО\"");
    }

    /// The explanation names organizations, facts and regions as people know them, in Russian,
    /// and no organization by its id or type by its stored name.
    #[test]
    fn the_explanation_is_russian_and_names_things_by_their_names() {
        let d = run(&directory(vec![]), "41", "diary", "", "").decision;
        assert_eq!(
            d.explanation,
            "Адресат факта «diary» — организация типа «региональный центр» в регионе «K»: «Short center41». \
             Срок — 10 календарных дней: факт «diary» в регионе «K» относится к фаст-треку. \
             Обращение направлено в «Short center41»."
        );
        let d = run(&directory(vec![]), "41", "school", "school41-deep", "").decision;
        assert_eq!(
            d.steps.iter().map(|s| s.reason.as_str()).collect::<Vec<_>>(),
            [
                "Адресат факта «school» — выбранная заявителем организация типа «школа»: «Short school41-deep»",
                "Организация «Short school41-deep» не подключена к платформе, обращение передано вышестоящей \
                 организации «Short dept41-off»",
                "Организация «Short dept41-off» не подключена к платформе, обращение передано вышестоящей \
                 организации «Short min41»",
                "Срок — 2 календарных дня, установлен для факта «school»",
            ]
        );
        let d = run(&directory(vec![]), "16", "federal", "", "").decision;
        assert!(
            d.explanation.starts_with("Адресат факта «federal» — федеральный орган «Short fed»"),
            "{}",
            d.explanation
        );
        let d = run(&directory(vec![]), "41", "working", "", "").decision;
        assert!(d.explanation.contains("Срок — 21 рабочий день, установлен для факта «working»"), "{}", d.explanation);
        let d = run(&directory(vec![]), "77", "diary", "", "").decision;
        assert!(
            d.explanation.contains(
                "Кабинета [missing] региона «M» нет в справочнике; обращение рассматривает резервный кабинет"
            ),
            "{}",
            d.explanation
        );
        for text in [&d.explanation, &run(&directory(vec![]), "41", "school", "college41", "").decision.explanation] {
            assert!(
                !text.contains("regional_center") && !text.contains("(college41)") && !text.contains("(cab41)"),
                "{text}"
            );
        }
    }

    /// A rule's own organization reads its id, conditions and executor; anybody else only whose
    /// rule sent the message where, and nothing of a rule that changed nothing.
    #[test]
    fn auto_rule_details_are_shown_only_to_their_organization() {
        let mut to_executor = rule("r-exec", "dept41", 5, "diary", &["Столов"], "dept41");
        to_executor.target_executor_id = "exec-7".into();
        let rules = vec![
            rule("r-off", "center41", 1, "", &[], "school41-off"),
            rule("r-dept", "center41", 2, "diary", &[], "dept41"),
            to_executor,
        ];
        let full = run(&directory(rules), "41", "diary", "", "В столовой холодно").decision;
        assert_eq!((full.organization.id.as_str(), full.auto_rule_id.as_str()), ("dept41", "r-exec"));
        assert_eq!(full.target_executor_id, "exec-7");
        assert!(
            full.explanation.contains("Авто-правило [r-off] организации «Short center41» подошло, но не применено")
        );
        assert!(full.explanation.contains(
            "Авто-правило [r-dept] организации «Short center41» (приоритет 2, условие: факт «diary») передаёт \
             обращение в «Short dept41»"
        ));
        assert!(full.explanation.contains(
            "Авто-правило [r-exec] организации «Short dept41» (приоритет 5, условие: факт «diary» и ключевые слова \
             «Столов») оставляет обращение в организации, исполнитель [exec-7]"
        ));

        // Nobody's rules: where the message went, and whose rule sent it, only.
        let public = full.clone().as_seen_by(|_| false);
        assert!(public.delegated_by_auto_rule);
        assert_eq!((public.auto_rule_id.as_str(), public.target_executor_id.as_str()), ("", ""));
        assert_eq!(public.organization.id, "dept41");
        assert_eq!(
            public.steps.iter().map(|s| (s.rule, s.reason.as_str())).collect::<Vec<_>>(),
            [
                (
                    StepRule::AddresseeRule,
                    "Адресат факта «diary» — организация типа «региональный центр» в регионе «K»: «Short center41»"
                ),
                (
                    StepRule::AutoRule,
                    "По авто-правилу организации «Short center41» обращение передано в «Short dept41»"
                ),
                (StepRule::AutoRule, "По авто-правилу организации «Short dept41» обращение передано её исполнителю"),
                (StepRule::Period, "Срок — 10 календарных дней: факт «diary» в регионе «K» относится к фаст-треку"),
            ]
        );
        for secret in ["r-off", "r-dept", "r-exec", "exec-7", "Столов", "приоритет", "условие"] {
            assert!(!public.explanation.contains(secret), "{secret} in {}", public.explanation);
        }
        assert_eq!(public.explanation, full.public_explanation());

        // The center's staff: the center's rules in full, the department's as a delegation only.
        let center = full.clone().as_seen_by(|org| org == "center41");
        assert_eq!((center.auto_rule_id.as_str(), center.target_executor_id.as_str()), ("", ""));
        assert!(center.explanation.contains("[r-off]") && center.explanation.contains("[r-dept]"));
        assert!(!center.explanation.contains("r-exec") && !center.explanation.contains("exec-7"));
        // The department's: the rule that decided, with its executor.
        let department = full.clone().as_seen_by(|org| org == "dept41");
        assert_eq!((department.auto_rule_id.as_str(), department.target_executor_id.as_str()), ("r-exec", "exec-7"));
        assert!(!department.explanation.contains("r-off") && !department.explanation.contains("r-dept"));
        assert_eq!(department.steps.len(), 4, "the center's skipped rule is left out");
        // Everybody's (the platform): the decision unchanged.
        let all = full.clone().as_seen_by(|_| true);
        assert_eq!(all.steps, full.steps);
        assert_eq!(all.explanation, full.explanation);
    }
}
