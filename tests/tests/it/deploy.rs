//! The deployment files against the workspace they deploy: the Dockerfile, the compose file
//! with its Prometheus, collector and Grafana provisioning, and the Helm chart. Every service they
//! run is a binary the workspace builds, every `POS_*` setting they give is one the configuration
//! accepts (loaded through the platform's own loader, so a misspelt name fails here and not in a
//! pod), Prometheus scrapes every service on the port it serves metrics on, and the probes ask
//! gRPC health on the gRPC port. Tools that are installed (`promtool`, a compose validator,
//! `helm`) check the files as well; absent ones are reported and skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pos_platform::config::{PlatformConfig, section};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A YAML file with its `<<:` merge keys applied, as compose and Helm read it.
fn yaml(relative: &str) -> Yaml {
    let mut value: Yaml =
        serde_yaml_ng::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"));
    value.apply_merge().unwrap_or_else(|error| panic!("{relative}: {error}"));
    value
}

fn text(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn map_keys(value: &Yaml) -> BTreeSet<String> {
    value.as_mapping().map(|m| m.keys().map(text).collect()).unwrap_or_default()
}

/// The binaries the workspace's services build, by folder under `services/`.
fn service_binaries() -> BTreeMap<String, String> {
    let mut binaries = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("services")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let bins = manifest.get("bin").and_then(|b| b.as_array()).cloned().unwrap_or_default();
        assert_eq!(bins.len(), 1, "{} builds one binary", dir.display());
        let name = bins[0]["name"].as_str().unwrap().to_owned();
        binaries.insert(dir.file_name().unwrap().to_string_lossy().into_owned(), name);
    }
    binaries
}

/// The services a deployment must run, each the owner of a part of the `pos.v1` API that the
/// front door forwards to (`peers::Service`), with the binary the workspace builds for it.
fn backend_binaries() -> BTreeMap<String, String> {
    let binaries = service_binaries();
    pos_platform::peers::Service::ALL
        .iter()
        .map(|service| {
            let name = service.name().to_owned();
            let binary = binaries.get(&name).unwrap_or_else(|| panic!("services/{name} builds no binary")).clone();
            (name, binary)
        })
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap_or_else(|_| panic!("no port in {addr:?}"))
}

// ---------------------------------------------------------------------------------------------
// The configuration, as the processes load it.

/// Every key the configuration knows: the platform's and each service section's defaults.
fn schema() -> Json {
    let mut tree = serde_json::to_value(PlatformConfig::default()).unwrap();
    tree["intake"] = serde_json::to_value(pos_intake::config::IntakeConfig::default()).unwrap();
    tree["routing"] = serde_json::to_value(pos_routing::RoutingConfig::default()).unwrap();
    tree["notify"] = serde_json::to_value(pos_notify::NotifyConfig::default()).unwrap();
    tree["sla"] = serde_json::to_value(pos_sla::config::SlaConfig::default()).unwrap();
    tree["web"] = serde_json::to_value(pos_web::WebConfig::default()).unwrap();
    tree
}

/// Paths in `tree` that `schema` does not have.
fn unknown_keys(tree: &Json, schema: &Json, path: &str, unknown: &mut Vec<String>) {
    let Json::Object(entries) = tree else { return };
    for (key, value) in entries {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match schema.get(key) {
            None => unknown.push(here),
            Some(known @ Json::Object(_)) => unknown_keys(value, known, &here, unknown),
            // A leaf (or an unset option) takes the value whole.
            Some(_) => {}
        }
    }
}

/// Loads the configuration of every service from exactly `env`, as a process started with it
/// would: the keys must all be known, and each section must load and validate.
#[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
fn try_load(source: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    let schema = schema();
    figment::Jail::try_with(|jail| {
        jail.clear_env();
        for (key, value) in env {
            jail.set_env(key, value);
        }
        let tree: Json = pos_platform::config::figment(None).extract().map_err(|e| e.to_string())?;
        let mut unknown = Vec::new();
        unknown_keys(&tree, &schema, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(format!("settings the configuration does not have: {unknown:?}").into());
        }
        PlatformConfig::load(None).map_err(|e| e.to_string())?;
        pos_intake::config::IntakeConfig::load(None).map_err(|e| e.to_string())?;
        let routing: pos_routing::RoutingConfig = section(None, "routing").map_err(|e| e.to_string())?;
        routing.validate().map_err(|e| e.to_string())?;
        let _: pos_notify::NotifyConfig = section(None, "notify").map_err(|e| e.to_string())?;
        pos_sla::config::SlaConfig::load(None).map_err(|e| e.to_string())?;
        let _: pos_web::WebConfig = section(None, "web").map_err(|e| e.to_string())?;
        Ok(())
    })
    .map_err(|error| format!("{source}: {error}"))
}

fn load(source: &str, env: &BTreeMap<String, String>) {
    if let Err(error) = try_load(source, env) {
        panic!("{error}");
    }
}

#[test]
fn the_configuration_check_catches_a_misspelt_or_invalid_setting() {
    let good = BTreeMap::from([("POS_AUTH__HS256_SECRET".to_owned(), "dev".to_owned())]);
    load("good", &good);
    for (name, value) in [
        ("POS_DATABSE_URL", "postgres://h/d"),
        ("POS_NOTIFY__SMTP_ULR", "smtp://h:25"),
        ("POS_PEERS__ROUTNG", "http://h:1"),
        ("POS_INTAKE__S3__ENDPIONT", "http://h:9000"),
        ("POS_REDIS_URL", "http://not-redis"),
        ("POS_PEERS__ROUTING", "routing:50051"),
    ] {
        let mut env = good.clone();
        env.insert(name.to_owned(), value.to_owned());
        assert!(try_load(name, &env).is_err(), "{name}={value} was accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// The image.

#[test]
fn the_image_holds_every_binary_runs_as_non_root_and_sets_known_settings() {
    let dockerfile = read("Dockerfile");
    let stages = dockerfile.lines().filter(|l| l.trim_start().starts_with("FROM ")).count();
    assert!(stages >= 2, "a multi-stage build");
    // The packages built and copied out of the build stage (each package is named as its binary).
    let copied = dockerfile.lines().find(|l| l.trim_start().starts_with("bins=\"")).expect("the binaries built");
    let copied: BTreeSet<&str> = copied.split('"').nth(1).unwrap().split_whitespace().collect();
    assert!(dockerfile.contains("for bin in $bins; do cp \"target/release/$bin\" /out/bin/"), "all copied");
    for binary in backend_binaries().values().map(String::as_str).chain(["pos"]) {
        assert!(copied.contains(binary), "the image lacks {binary}: copies {copied:?}");
    }
    let user = dockerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER");
    let user = user.trim_start_matches("USER ").split(':').next().unwrap().trim();
    assert!(user != "0" && user != "root", "the runtime user is not root");

    // ENV lines, with their `\` continuations.
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ENV ") {
            in_env = true;
            collect_env(rest, &mut env);
        } else if in_env {
            collect_env(line, &mut env);
        }
        in_env = in_env && line.ends_with('\\');
    }
    assert!(env.contains_key("POS_GRPC_ADDR") && env.contains_key("POS_METRICS_ADDR"), "{env:?}");
    env.insert("POS_AUTH__HS256_SECRET".into(), "dev".into());
    load("Dockerfile", &env);
}

fn collect_env(line: &str, env: &mut BTreeMap<String, String>) {
    for pair in line.trim_end_matches('\\').split_whitespace() {
        if let Some((key, value)) = pair.split_once('=') {
            env.insert(key.to_owned(), value.to_owned());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compose.

const COMPOSE: &str = "deploy/compose/compose.yaml";

/// `${NAME:-default}` as compose interpolates it in a shell that does not set NAME.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, default)| default).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out + rest
}

/// The pos services of the compose file: compose name → (binary, environment).
type ComposeServices = BTreeMap<String, (String, BTreeMap<String, Option<String>>)>;

fn compose_pos_services(compose: &Yaml) -> ComposeServices {
    let mut services = BTreeMap::new();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let Some(command) = service.get("command").and_then(|c| c.as_sequence()) else { continue };
        let binary = text(&command[0]);
        if !binary.starts_with("pos") {
            continue;
        }
        let env = service["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (text(k), if v.is_null() { None } else { Some(interpolate(&text(v))) }))
            .collect();
        services.insert(text(name), (binary, env));
    }
    services
}

/// The OTLP endpoint of the `traces` profile's collector: `http://<service>:<grpc receiver port>`.
fn collector_endpoint(compose: &Yaml) -> String {
    let services = compose["services"].as_mapping().unwrap();
    let traced: Vec<String> = services
        .iter()
        .filter(|(_, s)| {
            s.get("profiles").is_some_and(|p| p.as_sequence().unwrap().iter().any(|p| text(p) == "traces"))
        })
        .map(|(name, _)| text(name))
        .collect();
    let collector = traced.iter().find(|name| name.contains("collector")).expect("a collector in the traces profile");
    assert!(traced.iter().any(|name| name.contains("jaeger")), "Jaeger in the traces profile: {traced:?}");

    let config = yaml("deploy/compose/otel-collector.yaml");
    let mounted = services[collector.as_str()]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| text(v).starts_with("./otel-collector.yaml:"));
    assert!(mounted, "the collector reads deploy/compose/otel-collector.yaml");
    let receiver = text(&config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]);
    let exporters: Vec<String> =
        config["service"]["pipelines"]["traces"]["exporters"].as_sequence().unwrap().iter().map(text).collect();
    let to_jaeger =
        exporters.iter().map(|e| text(&config["exporters"][e.as_str()]["endpoint"])).any(|e| e.starts_with("jaeger:"));
    assert!(to_jaeger, "the traces pipeline exports to the jaeger service: {exporters:?}");
    format!("http://{collector}:{}", port_of(&receiver))
}

#[test]
fn compose_runs_every_service_with_settings_the_configuration_accepts() {
    let compose = yaml(COMPOSE);
    let services = compose_pos_services(&compose);
    let binaries = backend_binaries();
    let by_binary: BTreeMap<&str, &str> =
        services.iter().map(|(name, (bin, _))| (bin.as_str(), name.as_str())).collect();
    let built: BTreeSet<String> = service_binaries().into_values().collect();
    for binary in by_binary.keys() {
        assert!(built.contains(*binary), "compose runs {binary}, which the workspace does not build");
    }
    for binary in binaries.values() {
        assert!(by_binary.contains_key(binary.as_str()), "compose does not run {binary}");
    }

    let endpoint = collector_endpoint(&compose);
    assert!(read(COMPOSE).contains(&format!("POS_OTLP_ENDPOINT={endpoint}")), "compose.yaml tells how to export");
    assert!(read("docs/deploy.md").contains(&format!("POS_OTLP_ENDPOINT={endpoint}")), "docs/deploy.md tells how");

    for (name, (binary, env)) in &services {
        let healthcheck: Vec<String> =
            compose["services"][name.as_str()]["healthcheck"]["test"].as_sequence().unwrap().iter().map(text).collect();
        assert_eq!(healthcheck, ["CMD", binary.as_str(), "healthcheck"], "{name} checks gRPC health");
        let grpc_port = port_of(env["POS_GRPC_ADDR"].as_deref().unwrap());
        // The front door: every process knows where each service is, by its compose name.
        for (folder, service_binary) in &binaries {
            let key = format!("POS_PEERS__{}", folder.to_ascii_uppercase());
            let peer = env.get(&key).cloned().flatten().unwrap_or_else(|| panic!("{name} lacks {key}"));
            assert_eq!(peer, format!("dns:///{}:{grpc_port}", by_binary[service_binary.as_str()]), "{name} {key}");
        }
        // A value-less entry comes from the shell: the one documented above.
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                let value = v.clone().unwrap_or_else(|| {
                    assert_eq!(k, "POS_OTLP_ENDPOINT", "{name}: {k} has no value");
                    endpoint.clone()
                });
                (k.clone(), value)
            })
            .collect();
        load(&format!("{COMPOSE} {name}"), &env);
    }
}

#[test]
fn prometheus_scrapes_every_service_on_its_metrics_port_and_loads_the_rules() {
    let compose = yaml(COMPOSE);
    let services = compose_pos_services(&compose);
    let prometheus = yaml("deploy/compose/prometheus.yml");
    let jobs = prometheus["scrape_configs"].as_sequence().unwrap();
    // The alert rules and dashboards select job="pos".
    let job = jobs.iter().find(|j| text(&j["job_name"]) == "pos").expect("a job named pos");
    let mut scraped = BTreeMap::new();
    for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
        for name in sd["names"].as_sequence().unwrap() {
            scraped.insert(text(name), sd["port"].as_u64().unwrap() as u16);
        }
    }
    for sc in job["static_configs"].as_sequence().into_iter().flatten() {
        for target in sc["targets"].as_sequence().unwrap() {
            let target = text(target);
            scraped.insert(target.split(':').next().unwrap().to_owned(), port_of(&target));
        }
    }
    for (name, (_, env)) in &services {
        let metrics =
            env.get("POS_METRICS_ADDR").cloned().flatten().unwrap_or_else(|| panic!("{name} serves no metrics"));
        assert_eq!(scraped.get(name), Some(&port_of(&metrics)), "{name} is scraped on its metrics port: {scraped:?}");
    }

    // The rules directory is mounted where rule_files looks.
    let volumes: Vec<String> =
        compose["services"]["prometheus"]["volumes"].as_sequence().unwrap().iter().map(text).collect();
    let rules_mount = volumes.iter().find(|v| v.starts_with("../prometheus/rules:")).expect("the rules mounted");
    let rules_target = rules_mount.split(':').nth(1).unwrap();
    let rule_files: Vec<String> = prometheus["rule_files"].as_sequence().unwrap().iter().map(text).collect();
    assert_eq!(rule_files, [format!("{rules_target}/*.yml")]);
    assert!(volumes.iter().any(|v| v.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")));

    // promtool, with the rule files where this checkout has them.
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        println!("skipped promtool check config: /usr/bin/promtool is not installed (Debian package prometheus)");
        return;
    }
    let dir = pos_platform::testing::TempDir::new();
    let rules = repo().join("deploy/prometheus/rules").canonicalize().unwrap();
    let config = read("deploy/compose/prometheus.yml").replace(&rule_files[0], &format!("{}/*.yml", rules.display()));
    let path = dir.0.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(promtool).args(["check", "config"]).arg(&path).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check config:\n{report}");
    assert!(report.contains("rules found"), "the rules were loaded:\n{report}");
}

#[test]
fn grafana_provisions_the_data_source_and_dashboards_compose_mounts() {
    let compose = yaml(COMPOSE);
    let volumes: Vec<String> =
        compose["services"]["grafana"]["volumes"].as_sequence().unwrap().iter().map(text).collect();
    let target = |source: &str| {
        let mount = volumes.iter().find(|v| v.starts_with(&format!("{source}:"))).unwrap_or_else(|| panic!("{source}"));
        mount.split(':').nth(1).unwrap().to_owned()
    };
    assert_eq!(target("../grafana/provisioning"), "/etc/grafana/provisioning");
    let provider = yaml("deploy/grafana/provisioning/dashboards/pos.yml");
    assert_eq!(text(&provider["providers"][0]["options"]["path"]), target("../grafana/dashboards"));

    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let source = &datasources["datasources"][0];
    let url = text(&source["url"]);
    assert!(url.starts_with("http://prometheus:"), "the compose service: {url}");
    let uid = text(&source["uid"]);
    // Every panel's data source is the provisioned one.
    for entry in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard = std::fs::read_to_string(&path).unwrap();
        let mut uids = BTreeSet::new();
        collect_datasource_uids(&serde_json::from_str(&dashboard).unwrap(), &mut uids);
        uids.retain(|u| !u.starts_with("${") && u != "-- Grafana --" && u != "grafana");
        assert!(uids.iter().all(|u| *u == uid), "{}: data sources {uids:?}, provisioned {uid}", path.display());
    }
}

fn collect_datasource_uids(value: &Json, uids: &mut BTreeSet<String>) {
    match value {
        Json::Object(entries) => {
            if let Some(uid) = entries.get("datasource").and_then(|d| d.get("uid")).and_then(Json::as_str) {
                uids.insert(uid.to_owned());
            }
            entries.values().for_each(|v| collect_datasource_uids(v, uids));
        }
        Json::Array(items) => items.iter().for_each(|v| collect_datasource_uids(v, uids)),
        _ => {}
    }
}

#[test]
fn compose_validates_when_a_validator_is_installed() {
    let file = repo().join(COMPOSE);
    let plugin = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let standalone = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());
    let (program, prefix): (&str, &[&str]) = match (plugin, standalone) {
        (true, _) => ("docker", &["compose"]),
        (false, true) => ("docker-compose", &[]),
        (false, false) => {
            println!("skipped compose validation: neither `docker compose` nor `docker-compose` is installed");
            return;
        }
    };
    for profile in [&[][..], &["--profile", "traces"][..]] {
        let out = Command::new(program)
            .args(prefix)
            .arg("-f")
            .arg(&file)
            .args(profile)
            .args(["config", "--quiet"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{program} config {profile:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

// ---------------------------------------------------------------------------------------------
// The Helm chart.

const CHART: &str = "deploy/helm/pos";

fn deep_merge(base: &mut Yaml, overlay: &Yaml) {
    match (base, overlay) {
        (Yaml::Mapping(base), Yaml::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) if existing.is_mapping() && value.is_mapping() => deep_merge(existing, value),
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// values.yaml alone, then with each region file over it, as `helm -f` merges them.
fn chart_values() -> Vec<(String, Yaml)> {
    let base = yaml(&format!("{CHART}/values.yaml"));
    let mut all = vec![("values.yaml".to_owned(), base.clone())];
    let mut regions: Vec<String> = std::fs::read_dir(repo().join(CHART))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("values-") && n.ends_with(".yaml"))
        .collect();
    regions.sort();
    assert!(!regions.is_empty(), "a region example");
    for region in regions {
        let overlay = yaml(&format!("{CHART}/{region}"));
        // A misspelt service would silently add a disabled-looking entry.
        let base_services = map_keys(&base["services"]);
        assert!(map_keys(&overlay["services"]).is_subset(&base_services), "{region}: unknown service");
        let mut merged = base.clone();
        deep_merge(&mut merged, &overlay);
        all.push((region, merged));
    }
    all
}

fn template(name: &str) -> String {
    read(&format!("{CHART}/templates/{name}"))
}

/// Every `POS_*` name a template spells out.
fn template_settings() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join(CHART).join("templates")).unwrap() {
        let body = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("POS_") {
            let tail = &rest[start..];
            let end =
                tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// The line of `file` that sets `name` must read `path` from the values (on it, or in the
/// `with` just before it): what the test loads below is what the chart renders.
fn assert_reads(file: &str, name: &str, path: &str) {
    let body = template(file);
    let lines: Vec<&str> = body.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{file}: no {name}"));
    let reads = |l: &str| {
        l.contains(&format!(".Values.{path} "))
            || l.contains(&format!(".Values.{path})"))
            || l.contains(&format!(".Values.{path} }}"))
    };
    assert!(reads(lines[at]) || (at > 0 && reads(lines[at - 1])), "{file}: {name} does not read .Values.{path}");
}

fn value_at<'a>(values: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(values, |v, key| &v[key])
}

#[test]
fn the_chart_runs_every_service_with_settings_the_configuration_accepts() {
    let binaries = backend_binaries();
    let built = service_binaries();
    let configmap = "configmap.yaml";
    // Settings the ConfigMap takes from one value each.
    let plain: &[(&str, &str)] = &[
        ("POS_EXCHANGE", "exchange"),
        ("POS_CACHE_PREFIX", "cachePrefix"),
        ("POS_DEPLOYMENT", "deployment"),
        ("POS_SCHEMA_PREFIX", "schemaPrefix"),
        ("POS_DB_MAX_CONNECTIONS", "database.maxConnections"),
        ("POS_SHUTDOWN_GRACE_SECS", "shutdownGraceSecs"),
        ("POS_JSON_LOGS", "jsonLogs"),
        ("POS_LOG_FILTER", "logFilter"),
        ("POS_OTLP_ENDPOINT", "otlpEndpoint"),
        ("POS_AUTH__ISSUER", "auth.issuer"),
        ("POS_AUTH__AUDIENCE", "auth.audience"),
        ("POS_AUTH__JWKS_URL", "auth.jwksUrl"),
        ("POS_AUTH__ALLOW_DEVELOPMENT_SECRET", "auth.hs256Secret.allowDevelopmentSecret"),
        ("POS_PEERS__DNS_REFRESH_SECS", "peers.dnsRefreshSecs"),
    ];
    for (name, path) in plain {
        assert_reads(configmap, name, path);
    }
    assert_reads(configmap, "POS_REGIONS", "regions");
    assert!(template(configmap).contains(r#"POS_GRPC_ADDR: "0.0.0.0:{{ .Values.ports.grpc }}""#));
    assert!(template(configmap).contains(r#"POS_METRICS_ADDR: "0.0.0.0:{{ .Values.ports.metrics }}""#));
    assert!(
        template(configmap)
            .contains(r#"POS_PEERS__{{ upper $name }}: {{ printf "dns:///%s:%v" (include "pos.peerHost""#)
    );
    assert!(template("_helpers.tpl").contains(r#"(printf "/etc/pos/keys/%s" .)"#));
    assert_reads(configmap, "POS_TLS__ALLOW_PLAINTEXT", "tls.allowPlaintext");
    assert_reads(configmap, "POS_TLS__REQUIRE_CLIENT_CERT", "tls.requireClientCert");
    assert!(template(configmap).contains("POS_TLS__CERT_FILE: /etc/pos/tls/tls.crt"));
    assert!(template(configmap).contains("POS_TLS__CA_FILE: /etc/pos/tls/ca.crt"));
    assert!(template("services.yaml").contains("secretName: {{ $.Values.tls.existingSecret }}"));
    // Secrets: read by reference, never rendered.
    let secrets: &[(&str, &str)] = &[
        ("POS_DATABASE_URL", "postgres://pos:secret@db.example:5432/pos"),
        ("POS_AMQP_URL", "amqp://pos:secret@mq.example:5672/%2f"),
        ("POS_REDIS_URL", "redis://cache.example:6379"),
        ("POS_AUTH__HS256_SECRET", "secret"),
        ("POS_NOTIFY__SMTP_URL", "smtp://relay.example:25"),
    ];
    let services_template = template("services.yaml");
    for (name, _) in secrets {
        let at = services_template.find(&format!("- name: {name}\n")).unwrap_or_else(|| panic!("{name}"));
        assert!(
            services_template[at..].lines().nth(2).unwrap().contains("secretKeyRef:"),
            "{name} is a secret reference"
        );
    }
    // The web cabinet's settings, each read from one value (web.yaml).
    let web_plain: &[(&str, &str, &str)] = &[
        ("POS_WEB__DEV_SIGN_IN", "{{ $web.devSignIn | quote }}", "web.devSignIn"),
        ("POS_WEB__SECURE_COOKIES", "{{ $web.secureCookies | quote }}", "web.secureCookies"),
        ("POS_WEB__OIDC__ISSUER_URL", "{{ .issuerUrl | quote }}", "web.oidc.issuerUrl"),
        ("POS_WEB__OIDC__CLIENT_ID", "{{ .clientId | quote }}", "web.oidc.clientId"),
        ("POS_WEB__OIDC__REDIRECT_URL", "{{ .redirectUrl | quote }}", "web.oidc.redirectUrl"),
        ("POS_WEB__OIDC__ORGANIZATION_CLAIM", "{{ .organizationClaim | quote }}", "web.oidc.organizationClaim"),
        ("POS_WEB__OIDC__ROLES_CLAIM", "{{ .rolesClaim | quote }}", "web.oidc.rolesClaim"),
    ];
    let web_template = template("web.yaml");
    for (name, expr, _) in web_plain {
        let at = web_template.find(&format!("- name: {name}\n")).unwrap_or_else(|| panic!("web.yaml: no {name}"));
        let value = web_template[at..].lines().nth(1).unwrap().trim();
        assert_eq!(value, format!("value: {expr}"), "web.yaml: {name}");
    }
    for name in ["POS_WEB__OIDC__CLIENT_SECRET", "POS_REDIS_URL", "POS_AUTH__HS256_SECRET"] {
        let at = web_template.find(&format!("- name: {name}\n")).unwrap_or_else(|| panic!("web.yaml: no {name}"));
        assert!(web_template[at..].lines().nth(2).unwrap().contains("secretKeyRef:"), "{name} is a secret reference");
    }
    assert!(web_template.contains(r#"value: "0.0.0.0:{{ $web.port }}""#));
    assert!(web_template.contains(r#"value: "/etc/pos/web-key/{{ $web.oidc.tokenKey.key }}""#));
    // Nothing in the templates escapes the check.
    let covered: BTreeSet<String> = plain
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .chain(secrets.iter().map(|(n, _)| (*n).to_owned()))
        .chain(web_plain.iter().map(|(n, _, _)| (*n).to_owned()))
        .chain(
            [
                "POS_WEB__ADDR",
                "POS_WEB__GRPC_ENDPOINT",
                "POS_WEB__OIDC__CLIENT_SECRET",
                "POS_WEB__OIDC__TOKEN_KEY_FILE",
            ]
            .map(String::from),
        )
        .chain(
            [
                "POS_REGIONS",
                "POS_GRPC_ADDR",
                "POS_METRICS_ADDR",
                "POS_DATA_DIR",
                "POS_AUTH__PUBLIC_KEY_FILES",
                "POS_PEERS__",
                "POS_TLS__ALLOW_PLAINTEXT",
            ]
            .map(String::from),
        )
        // Files of tls.existingSecret: the pods mount them; the chart's values name none.
        .chain(
            [
                "POS_TLS__CERT_FILE",
                "POS_TLS__KEY_FILE",
                "POS_TLS__CLIENT_CA_FILE",
                "POS_TLS__REQUIRE_CLIENT_CERT",
                "POS_TLS__CA_FILE",
                "POS_TLS__CLIENT_CERT_FILE",
                "POS_TLS__CLIENT_KEY_FILE",
                "POS_TLS__SERVER_NAME",
            ]
            .map(String::from),
        )
        .collect();
    let unchecked: Vec<String> = template_settings().difference(&covered).cloned().collect();
    assert!(unchecked.is_empty(), "settings the test does not load: {unchecked:?}");

    for (file, values) in chart_values() {
        // The chart runs `pos-<name>` for each entry: a binary the workspace builds.
        let services = map_keys(&values["services"]);
        for service in &services {
            assert_eq!(built.get(service), Some(&format!("pos-{service}")), "{file}: {service} is no workspace binary");
        }
        let required: BTreeSet<String> = binaries.keys().cloned().collect();
        assert!(required.is_subset(&services), "{file}: the chart runs {services:?}, not all of {required:?}");
        let mut env = BTreeMap::new();
        for (name, path) in plain {
            let value = value_at(&values, path);
            if !value.is_null() && !text(value).is_empty() {
                env.insert((*name).to_owned(), text(value));
            }
        }
        let regions: Vec<String> = values["regions"].as_sequence().unwrap().iter().map(text).collect();
        env.insert("POS_REGIONS".into(), regions.join(","));
        env.insert("POS_GRPC_ADDR".into(), format!("0.0.0.0:{}", text(&values["ports"]["grpc"])));
        env.insert("POS_METRICS_ADDR".into(), format!("0.0.0.0:{}", text(&values["ports"]["metrics"])));
        env.insert("POS_DATA_DIR".into(), "/var/lib/pos".into());
        // Without a TLS Secret the listener beyond loopback must be allowed plaintext.
        if text(&values["tls"]["existingSecret"]).is_empty() {
            env.insert("POS_TLS__ALLOW_PLAINTEXT".into(), text(&values["tls"]["allowPlaintext"]));
        }
        let keys: Vec<String> = values["auth"]["publicKeys"]["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| format!("/etc/pos/keys/{}", text(f)))
            .collect();
        if !keys.is_empty() {
            env.insert("POS_AUTH__PUBLIC_KEY_FILES".into(), format!("[{}]", keys.join(", ")));
        }
        for service in &services {
            let peer = format!("dns:///pos-{service}.pos.svc:{}", text(&values["ports"]["grpc"]));
            env.insert(format!("POS_PEERS__{}", service.to_ascii_uppercase()), peer);
        }
        for (name, sample) in secrets {
            env.insert((*name).to_owned(), (*sample).to_owned());
        }
        for (key, value) in values["env"].as_mapping().unwrap() {
            env.insert(text(key), text(value));
        }
        for service in &services {
            let mut env = env.clone();
            for (key, value) in values["services"][service.as_str()]["env"].as_mapping().unwrap() {
                env.insert(text(key), text(value));
            }
            load(&format!("{CHART}/{file} {service}"), &env);
        }
        // The web cabinet, with what web.yaml sets.
        let web = &values["web"];
        if web["enabled"].as_bool().unwrap() {
            let mut env = env.clone();
            for (name, _, path) in web_plain {
                env.insert((*name).to_owned(), text(value_at(&values, path)));
            }
            env.insert("POS_WEB__ADDR".into(), format!("0.0.0.0:{}", text(&web["port"])));
            env.insert("POS_WEB__GRPC_ENDPOINT".into(), format!("http://pos:{}", text(&values["ports"]["grpc"])));
            env.insert("POS_WEB__OIDC__CLIENT_SECRET".into(), "secret".into());
            env.insert("POS_WEB__OIDC__TOKEN_KEY_FILE".into(), "/etc/pos/web-key/tls.key".into());
            for (key, value) in web["env"].as_mapping().unwrap() {
                env.insert(text(key), text(value));
            }
            load(&format!("{CHART}/{file} web"), &env);
        }
    }
}

#[test]
fn the_chart_probes_grpc_health_and_scales_and_protects_every_service() {
    let services_template = template("services.yaml");
    assert!(services_template.contains(r#"command: ["pos-{{ $name }}"]"#), "each service runs its own binary");
    assert!(services_template.contains("containerPort: {{ $.Values.ports.grpc }}"));
    assert!(services_template.contains("containerPort: {{ $.Values.ports.metrics }}"));
    for probe in ["startupProbe:", "livenessProbe:", "readinessProbe:"] {
        let at = services_template.find(probe).unwrap_or_else(|| panic!("no {probe}"));
        let block: Vec<&str> = services_template[at..].lines().skip(1).take(2).map(str::trim).collect();
        assert_eq!(block, ["grpc:", "port: {{ $.Values.ports.grpc }}"], "{probe} asks gRPC health on the gRPC port");
    }
    assert!(services_template.contains(r#"service: {{ include "pos.healthName" $name }}"#));
    // With TLS the binary's own check asks, over TLS (Kubernetes' gRPC probes speak none).
    assert!(services_template.contains(
        r#"command: ["pos-{{ $name }}", "healthcheck", "--endpoint", "https://127.0.0.1:{{ $.Values.ports.grpc }}", "--service", {{ include "pos.healthName" $name | quote }}]"#
    ));
    assert!(template("_helpers.tpl").contains(r#"printf "pos.v1.%sService" (title .)"#));
    // What the readiness probe asks is the name each service reports healthy under.
    for service in pos_platform::peers::Service::ALL {
        let name = service.name();
        let title = name[..1].to_ascii_uppercase() + &name[1..];
        assert_eq!(service.grpc_service(), format!("pos.v1.{title}Service"));
    }
    for kind in ["kind: Deployment", "kind: Service", "kind: HorizontalPodAutoscaler", "kind: PodDisruptionBudget"] {
        let at = services_template.find(kind).unwrap_or_else(|| panic!("no {kind}"));
        assert!(services_template[..at].contains("range $name, $service := .Values.services"), "{kind} per service");
    }
    // The container and pod security contexts are the values' own, checked below.
    assert!(services_template.contains("{{- toYaml $.Values.securityContext | nindent 12 }}"));
    assert!(services_template.contains("{{- toYaml $.Values.podSecurityContext | nindent 8 }}"));

    for (file, values) in chart_values() {
        assert!(values["podSecurityContext"]["runAsNonRoot"].as_bool().unwrap(), "{file}: non-root");
        assert!(values["securityContext"]["readOnlyRootFilesystem"].as_bool().unwrap(), "{file}");
        for (name, service) in values["services"].as_mapping().unwrap() {
            let name = text(name);
            let scaling = &service["autoscaling"];
            let (min, max) = (scaling["minReplicas"].as_u64().unwrap(), scaling["maxReplicas"].as_u64().unwrap());
            assert!(1 <= min && min <= max, "{file} {name}: autoscaling {min}..{max}");
            assert!(service["replicas"].as_u64().unwrap() >= 1, "{file} {name}");
            assert!(service["pdb"]["enabled"].is_bool() && service["pdb"]["maxUnavailable"].is_u64(), "{file} {name}");
            for resource in ["requests", "limits"] {
                assert!(service["resources"][resource].is_mapping(), "{file} {name}: resources.{resource}");
            }
        }
    }
}

#[test]
fn the_chart_renders_when_helm_is_installed() {
    if !Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success()) {
        println!("skipped helm lint and helm template: helm is not installed");
        return;
    }
    let chart = repo().join(CHART);
    for (file, _) in chart_values().into_iter().skip(1) {
        for action in ["lint", "template"] {
            let out = Command::new("helm").arg(action).arg(&chart).arg("-f").arg(chart.join(&file)).output().unwrap();
            assert!(out.status.success(), "helm {action} -f {file}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
