//! The deployment files under `deploy/` (Dockerfile, docker compose, Kubernetes, systemd,
//! the compose Streamr node) have the structure the README promises, agree with each
//! other, and use only configuration keys, `*_file` secrets and `WEARBRIDGE__` variables
//! that wearbridge's own loader accepts (the loader `tests/deploy_config.rs` uses).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value as Yaml;
use wearbridge::config::{LoadOptions, Loaded, Origin, Transport, load, parse_duration};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
/// `sync.shutdown_grace` when a configuration does not set it.
const DEFAULT_SHUTDOWN_GRACE: &str = "30s";
/// Where the configuration file is mounted in every container.
const CONFIG_PATH: &str = "/etc/wearbridge/wearbridge.toml";

fn read(rel: &str) -> String {
    let path = Path::new(DEPLOY).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file as one YAML document (`from_str` refuses a stream of several).
fn yaml(rel: &str) -> Yaml {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// The value at a path of mapping keys; `Null` when any of them is missing.
fn at<'a>(value: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(value, |v, key| &v[*key])
}

fn str_at<'a>(value: &'a Yaml, path: &[&str]) -> &'a str {
    at(value, path).as_str().unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn seq(value: &Yaml) -> &[Yaml] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(value: &Yaml) -> Vec<&str> {
    seq(value).iter().filter_map(Yaml::as_str).collect()
}

fn k8s(file: &str) -> Yaml {
    yaml(&format!("k8s/{file}"))
}

/// The `wearbridge` container of a pod spec.
fn wearbridge_container(pod: &Yaml) -> &Yaml {
    seq(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("wearbridge"))
        .expect("a container named wearbridge")
}

fn deployment_pod(deployment: &Yaml) -> &Yaml {
    at(deployment, &["spec", "template", "spec"])
}

fn cronjob_pod(cronjob: &Yaml) -> &Yaml {
    at(cronjob, &["spec", "jobTemplate", "spec", "template", "spec"])
}

/// A container's security setting, else the pod's.
fn security<'a>(pod: &'a Yaml, container: &'a Yaml, key: &str) -> &'a Yaml {
    let own = &container["securityContext"][key];
    if own.is_null() { &pod["securityContext"][key] } else { own }
}

fn assert_locked_down(what: &str, pod: &Yaml, container: &Yaml) {
    assert_eq!(security(pod, container, "runAsNonRoot").as_bool(), Some(true), "{what}: runAsNonRoot");
    let uid = security(pod, container, "runAsUser").as_u64();
    assert!(uid.is_some_and(|uid| uid != 0), "{what}: runAsUser must be a non-zero uid, got {uid:?}");
    assert_eq!(security(pod, container, "readOnlyRootFilesystem").as_bool(), Some(true), "{what}");
    assert_eq!(security(pod, container, "allowPrivilegeEscalation").as_bool(), Some(false), "{what}");
}

/// A container's environment as wearbridge sees it: literal values, and values taken
/// from the Secret's `stringData`.
fn container_env(container: &Yaml, secret: &Yaml) -> Vec<(String, String)> {
    let secret_name = str_at(secret, &["metadata", "name"]);
    seq(&container["env"])
        .iter()
        .map(|var| {
            let name = str_at(var, &["name"]).to_owned();
            let value = match var["value"].as_str() {
                Some(value) => value.to_owned(),
                None => {
                    let from = at(var, &["valueFrom", "secretKeyRef"]);
                    assert_eq!(str_at(from, &["name"]), secret_name, "{name} comes from another Secret");
                    let key = str_at(from, &["key"]);
                    str_at(secret, &["stringData", key]).to_owned()
                }
            };
            (name, value)
        })
        .collect()
}

/// The paths of the files that the pod's Secret volumes put into the container.
fn mounted_secret_files(pod: &Yaml, container: &Yaml, secret: &Yaml) -> BTreeSet<String> {
    let secret_name = str_at(secret, &["metadata", "name"]);
    let mut files = BTreeSet::new();
    for mount in seq(&container["volumeMounts"]) {
        let volume_name = str_at(mount, &["name"]);
        let volume = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some(volume_name))
            .unwrap_or_else(|| panic!("volumeMount {volume_name} has no volume"));
        if volume["secret"].is_null() {
            continue;
        }
        assert_eq!(str_at(volume, &["secret", "secretName"]), secret_name);
        let dir = str_at(mount, &["mountPath"]);
        let items = seq(&volume["secret"]["items"]);
        if items.is_empty() {
            let data = at(secret, &["stringData"]).as_mapping().expect("the Secret's stringData");
            for key in data.keys() {
                files.insert(format!("{dir}/{}", key.as_str().expect("string keys")));
            }
        }
        for item in items {
            let key = str_at(item, &["key"]);
            assert!(!at(secret, &["stringData", key]).is_null(), "volume item {key} is not a key of the Secret");
            files.insert(format!("{dir}/{}", str_at(item, &["path"])));
        }
    }
    files
}

/// Where a compose service's secrets appear: `/run/secrets/<target>`.
fn compose_secret_paths(compose: &Yaml, service: &str) -> BTreeSet<String> {
    let declared = compose["secrets"].as_mapping().expect("top-level secrets");
    seq(&compose["services"][service]["secrets"])
        .iter()
        .map(|entry| {
            let (source, target) = match entry.as_str() {
                Some(name) => (name, name),
                None => {
                    let source = str_at(entry, &["source"]);
                    (source, entry["target"].as_str().unwrap_or(source))
                }
            };
            assert!(declared.contains_key(source), "service {service}: secret {source} is not declared");
            format!("/run/secrets/{target}")
        })
        .collect()
}

/// The `WEARBRIDGE__SECTION__KEY` names in a text.
fn wearbridge_vars(text: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("WEARBRIDGE__") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        vars.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    vars
}

/// `WEARBRIDGE__STORE__URL` → `store.url`, as the loader maps it.
fn env_key(var: &str) -> String {
    let rest = var.strip_prefix("WEARBRIDGE__").expect("a WEARBRIDGE__ variable");
    rest.split("__").map(str::to_lowercase).collect::<Vec<_>>().join(".")
}

/// A string value of a TOML table by dotted key.
fn lookup(table: &toml::Table, dotted: &str) -> Option<String> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    value.as_str().map(str::to_owned)
}

fn shutdown_grace(table: &toml::Table) -> Duration {
    let text = lookup(table, "sync.shutdown_grace").unwrap_or_else(|| DEFAULT_SHUTDOWN_GRACE.to_owned());
    parse_duration(&text).unwrap()
}

/// A deployment configuration loaded as its container would load it.
struct DeployConfig {
    loaded: Loaded,
    /// The file as written, before any rewriting.
    table: toml::Table,
    /// `section.*_file` key → its path in the container.
    files: BTreeMap<String, String>,
    /// The `WEARBRIDGE__` environment the manifest gives it.
    env: Vec<(String, String)>,
}

/// Points every `*_file` path (which exists only inside the container) at a temporary
/// file with a dummy value: 64 hex characters, valid for key files and secrets alike, or a
/// PostgreSQL URL with a password for `store.url_file`.
fn redirect_files(table: &mut toml::Table, prefix: &str, dir: &Path, files: &mut BTreeMap<String, String>) {
    for (key, value) in table.iter_mut() {
        let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => redirect_files(inner, &dotted, dir, files),
            toml::Value::String(path) if key.ends_with("_file") => {
                let dummy = dir.join(dotted.replace('.', "-"));
                let value = if dotted == "store.url_file" {
                    "postgres://wearbridge:dummy-password@postgres:5432/wearbridge".to_owned()
                } else {
                    "0".repeat(64)
                };
                std::fs::write(&dummy, value).unwrap();
                files.insert(dotted, std::mem::replace(path, dummy.display().to_string()));
            }
            _ => {}
        }
    }
}

/// Loads a deployment configuration through wearbridge's loader with the manifest's
/// environment: an unknown key, an unknown variable or a bad value fails here.
fn load_deploy_config(name: &str, text: &str, env: Vec<(String, String)>) -> DeployConfig {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{name} is not TOML: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    let mut redirected = table.clone();
    redirect_files(&mut redirected, "", dir.path(), &mut files);
    let path = dir.path().join("wearbridge.toml");
    std::fs::write(&path, toml::to_string(&redirected).unwrap()).unwrap();
    let options = LoadOptions { file: Some(path), env: env.clone(), ..Default::default() };
    let loaded = load(&options).unwrap_or_else(|e| panic!("{name} does not load: {e}"));
    for (var, _) in &env {
        assert_eq!(loaded.origin(&env_key(var)), Origin::Env(var.clone()), "{name}: {var} sets no key");
    }
    DeployConfig { loaded, table, files, env }
}

/// What `run` checks at start-up, and the container specifics every deployment shares.
fn assert_runnable(name: &str, config: &DeployConfig) {
    let loaded = &config.loaded;
    wearbridge::app::require_for_run(loaded).unwrap_or_else(|e| panic!("{name}: `run` would refuse it: {e}"));
    wearbridge::app::require_for_publishing(loaded).unwrap_or_else(|e| panic!("{name}: cannot publish: {e}"));
    wearbridge::pipeline::Routes::new(&loaded.settings.streamr.streams).unwrap_or_else(|e| panic!("{name}: {e}"));
    let s = &loaded.settings;
    assert_eq!(s.streamr.transport, Transport::Websocket, "{name}");
    assert!(s.server.listen.ip().is_unspecified(), "{name}: probes come from outside: listen on 0.0.0.0");
    assert_eq!(s.server.listen.port(), 8080, "{name}");
    assert!(!config.files.is_empty(), "{name}: secrets come as *_file");
    for (key, path) in &config.files {
        assert!(path.starts_with("/run/secrets/"), "{name}: {key} = {path:?} is not a mounted secret");
    }
    // A configuration file in git never holds the database password: the URL is either
    // password-less (the password comes from elsewhere) or a mounted secret file.
    match lookup(&config.table, "store.url") {
        Some(url) => {
            let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{name}: store.url {url:?}: {e}"));
            assert!(parsed.password().is_none(), "{name}: store.url in the file must not hold a password");
        }
        None => assert!(config.files.contains_key("store.url_file"), "{name}: neither store.url nor store.url_file"),
    }
    let url = url::Url::parse(&loaded.settings.store.url).unwrap();
    assert_eq!(url.scheme(), "postgres", "{name}: replicas share a PostgreSQL store");
}

fn compose_config() -> DeployConfig {
    let text = read("compose/wearbridge.toml");
    let table: toml::Table = toml::from_str(&text).unwrap();
    // Compose fills these from secret files at start; stand in with the file's own value,
    // which still proves the loader maps each variable to that key.
    let env = wearbridge_vars(&read("docker-compose.yml"))
        .into_iter()
        .map(|var| {
            let value = lookup(&table, &env_key(&var)).unwrap_or_else(|| panic!("{var}: no string in the file"));
            (var, value)
        })
        .collect();
    load_deploy_config("deploy/compose/wearbridge.toml", &text, env)
}

fn k8s_config() -> DeployConfig {
    let configmap = k8s("configmap.yaml");
    let env = container_env(wearbridge_container(deployment_pod(&k8s("deployment.yaml"))), &k8s("secret.yaml"));
    load_deploy_config("the ConfigMap's wearbridge.toml", str_at(&configmap, &["data", "wearbridge.toml"]), env)
}

/// Dockerfile instructions as (KEYWORD, arguments), continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let keyword: String = current.chars().take_while(|c| !c.is_whitespace()).collect();
        let args = current[keyword.len()..].trim().to_owned();
        out.push((keyword.to_ascii_uppercase(), args));
        current.clear();
    }
    out
}

/// The image's default command (exec form).
fn image_cmd() -> Vec<String> {
    let (_, args) = dockerfile().into_iter().rfind(|(k, _)| k == "CMD").expect("a CMD");
    serde_json::from_str(&args).unwrap_or_else(|e| panic!("CMD must be exec form (JSON): {e}"))
}

/// (section, key, value) of each `Key=Value` line of a systemd unit, in order.
fn unit(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(rel).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The values of `key` in `[section]`.
fn unit_values<'a>(entries: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    entries.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
}

#[test]
fn compose_runs_wearbridge_with_postgres_and_a_streamr_node() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    for name in ["wearbridge", "postgres", "streamr"] {
        assert!(services[name].is_mapping(), "service {name}");
    }
    let wearbridge = &services["wearbridge"];
    let context = Path::new(DEPLOY).join(str_at(wearbridge, &["build", "context"]));
    assert!(context.join(str_at(wearbridge, &["build", "dockerfile"])).is_file(), "build points at deploy/Dockerfile");
    assert_eq!(str_at(wearbridge, &["depends_on", "postgres", "condition"]), "service_healthy");
    assert!(strings(at(services, &["postgres", "healthcheck", "test"])).join(" ").contains("pg_isready"));
    assert!(!str_at(services, &["postgres", "environment", "POSTGRES_PASSWORD_FILE"]).is_empty());

    // Every secret is a file under deploy/secrets/, never inline.
    let declared = compose["secrets"].as_mapping().expect("top-level secrets");
    assert!(!declared.is_empty());
    for (name, spec) in declared {
        let file = spec["file"].as_str().unwrap_or_else(|| panic!("secret {name:?} must be a file"));
        assert!(file.starts_with("./secrets/"), "secret {name:?} comes from {file}");
    }
    // Every bind-mounted file outside deploy/secrets/ is in the repository.
    for service in ["wearbridge", "postgres", "streamr"] {
        for volume in strings(&services[service]["volumes"]) {
            if let Some(source) = volume.split(':').next().filter(|s| s.starts_with("./")) {
                assert!(Path::new(DEPLOY).join(source).exists(), "{service} mounts missing {source}");
            }
        }
    }
    let config_mount = format!("./compose/wearbridge.toml:{CONFIG_PATH}");
    assert!(
        strings(&wearbridge["volumes"]).iter().any(|v| v.starts_with(config_mount.as_str())),
        "the wearbridge service mounts {config_mount}"
    );
    // Longer than the worker's own shutdown grace, or docker kills in-flight work.
    let stop = parse_duration(str_at(wearbridge, &["stop_grace_period"])).unwrap();
    assert!(stop > shutdown_grace(&compose_config().table), "stop_grace_period {stop:?}");
}

#[test]
fn compose_config_loads_and_its_secrets_are_mounted() {
    let config = compose_config();
    assert_runnable("deploy/compose/wearbridge.toml", &config);
    let compose = yaml("docker-compose.yml");
    let mounted = compose_secret_paths(&compose, "wearbridge");
    for (key, path) in &config.files {
        assert!(mounted.contains(path), "{key} = {path:?}, but the wearbridge service does not mount it: {mounted:?}");
    }
    // The store URL (with the password) is a mounted secret read through store.url_file,
    // so the image's own entrypoint runs: no shell, nothing in the environment.
    assert_eq!(config.files.get("store.url_file").map(String::as_str), Some("/run/secrets/store_url"));
    assert!(mounted.contains("/run/secrets/store_url"));
    let wearbridge = &compose["services"]["wearbridge"];
    assert!(wearbridge["entrypoint"].is_null() && wearbridge["command"].is_null(), "the image's own command runs");
    // The node is the compose service, on the websocket plugin's port.
    let node = url::Url::parse(&config.loaded.settings.streamr.url).unwrap();
    assert_eq!(node.host_str(), Some("streamr"));
    assert_eq!(node.port(), Some(7170));
}

#[test]
fn compose_streamr_node_has_the_websocket_plugin_and_keys_only_from_secrets() {
    let node: serde_json::Value = serde_json::from_str(&read("streamr/default.json")).unwrap();
    assert!(node["plugins"]["websocket"].is_object(), "websocket plugin (port 7170)");
    assert!(node["client"]["auth"]["privateKey"].is_null(), "no private key in git");
    assert_eq!(node["apiAuthentication"]["keys"].as_array().map(Vec::len), Some(0), "no API key in git");
    let start = read("streamr/start.sh");
    let compose = yaml("docker-compose.yml");
    let mounted = compose_secret_paths(&compose, "streamr");
    for (var, secret) in [
        ("STREAMR__BROKER__CLIENT__AUTH__PRIVATE_KEY", "/run/secrets/streamr_private_key"),
        ("STREAMR__BROKER__API_AUTHENTICATION__KEYS_1", "/run/secrets/streamr_api_key"),
    ] {
        assert!(start.contains(var) && start.contains(secret), "start.sh sets {var} from {secret}");
        assert!(mounted.contains(secret), "the streamr service mounts {secret}");
    }
    // Both sides hold the same API key: the one wearbridge presents is the node's.
    assert!(compose_secret_paths(&compose, "wearbridge").contains("/run/secrets/streamr_api_key"));
    assert!(strings(&compose["services"]["streamr"]["entrypoint"]).concat().contains("start.sh"));
}

#[test]
fn k8s_files_hold_one_resource_each() {
    let expected = [
        ("namespace.yaml", "Namespace"),
        ("configmap.yaml", "ConfigMap"),
        ("secret.yaml", "Secret"),
        ("deployment.yaml", "Deployment"),
        ("cronjob.yaml", "CronJob"),
        ("service.yaml", "Service"),
    ];
    let mut names: Vec<String> = std::fs::read_dir(Path::new(DEPLOY).join("k8s"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    names.sort();
    for (file, _) in expected {
        assert!(Path::new(DEPLOY).join("k8s").join(file).is_file(), "deploy/k8s/{file} is missing");
    }
    let namespace = str_at(&k8s("namespace.yaml"), &["metadata", "name"]).to_owned();
    for name in &names {
        let text = read(&format!("k8s/{name}"));
        assert!(!text.lines().any(|l| l.starts_with("---")), "deploy/k8s/{name}: one document per file, no ---");
        let doc = k8s(name);
        for key in ["apiVersion", "kind"] {
            assert!(doc[key].as_str().is_some_and(|s| !s.is_empty()), "deploy/k8s/{name}: {key}");
        }
        assert!(at(&doc, &["metadata", "name"]).as_str().is_some_and(|s| !s.is_empty()), "{name}: metadata.name");
        let kind = str_at(&doc, &["kind"]);
        if let Some((_, want)) = expected.iter().find(|(file, _)| *file == name.as_str()) {
            assert_eq!(kind, *want, "deploy/k8s/{name}");
        }
        if kind != "Namespace" {
            assert_eq!(at(&doc, &["metadata", "namespace"]).as_str(), Some(namespace.as_str()), "{name}");
        }
    }
    let secret = k8s("secret.yaml");
    assert_eq!(str_at(&secret, &["type"]), "Opaque");
    let keys = ["store.key", "anonymizer.key", "fitbit_client_secret", "withings_client_secret", "streamr_api_key"];
    for key in keys.into_iter().chain(["store_url"]) {
        assert!(at(&secret, &["stringData", key]).as_str().is_some(), "Secret stringData.{key}");
    }
}

#[test]
fn deployment_probes_health_runs_locked_down_and_mounts_config_and_secrets() {
    let deployment = k8s("deployment.yaml");
    let secret = k8s("secret.yaml");
    let configmap = k8s("configmap.yaml");
    assert_eq!(at(&deployment, &["spec", "replicas"]).as_u64(), Some(2));
    let pod = deployment_pod(&deployment);
    let container = wearbridge_container(pod);

    assert_eq!(str_at(container, &["livenessProbe", "httpGet", "path"]), "/healthz");
    assert_eq!(at(container, &["livenessProbe", "httpGet", "port"]).as_u64(), Some(8080));
    assert_eq!(str_at(container, &["readinessProbe", "httpGet", "path"]), "/readyz");
    assert_eq!(at(container, &["readinessProbe", "httpGet", "port"]).as_u64(), Some(8080));
    assert_locked_down("deployment", pod, container);
    assert!(at(container, &["resources", "limits", "memory"]).as_str().is_some(), "a memory limit");
    assert!(at(container, &["resources", "requests"]).is_mapping(), "resource requests");

    let config = k8s_config();
    let grace = at(pod, &["terminationGracePeriodSeconds"]).as_u64().expect("terminationGracePeriodSeconds");
    assert!(Duration::from_secs(grace) > shutdown_grace(&config.table), "the kubelet must outwait shutdown_grace");

    // The configuration: the ConfigMap mounted at /etc/wearbridge, named by --config.
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/etc/wearbridge"))
        .expect("a volume at /etc/wearbridge");
    let volume = seq(&pod["volumes"]).iter().find(|v| v["name"] == mount["name"]).expect("the config volume");
    assert_eq!(at(volume, &["configMap", "name"]).as_str(), Some(str_at(&configmap, &["metadata", "name"])));
    assert!(strings(&container["args"]).contains(&CONFIG_PATH));

    // Every *_file the configuration names is a file of the mounted Secret.
    let mounted = mounted_secret_files(pod, container, &secret);
    for (key, path) in &config.files {
        assert!(mounted.contains(path), "{key} = {path:?}, but the pod mounts only {mounted:?}");
    }
    let env = container_env(container, &secret);
    assert!(env.iter().any(|(var, _)| var == "WEARBRIDGE__STORE__URL"), "the store URL from the Secret");
}

#[test]
fn k8s_config_loads_with_the_pods_environment() {
    let config = k8s_config();
    assert_runnable("the ConfigMap's wearbridge.toml", &config);
    // WEARBRIDGE__STORE__URL (from the Secret) wins over the file's password-less URL.
    let secret = k8s("secret.yaml");
    assert_eq!(config.loaded.settings.store.url, str_at(&secret, &["stringData", "store_url"]));
    assert!(!config.env.is_empty());
}

#[test]
fn cronjob_runs_one_pass_at_a_time_with_the_same_pod() {
    let cronjob = k8s("cronjob.yaml");
    let deployment = k8s("deployment.yaml");
    let secret = k8s("secret.yaml");
    assert_eq!(str_at(&cronjob, &["spec", "concurrencyPolicy"]), "Forbid");
    let pod = cronjob_pod(&cronjob);
    let container = wearbridge_container(pod);
    let args = strings(&container["args"]);
    assert!(args.contains(&"run") && args.contains(&"--once"), "args {args:?}");
    assert_locked_down("cronjob", pod, container);

    let worker = wearbridge_container(deployment_pod(&deployment));
    assert_eq!(container["image"], worker["image"], "the same image as the Deployment");
    assert_eq!(container_env(container, &secret), container_env(worker, &secret), "the same environment");
    let config = k8s_config();
    let mounted = mounted_secret_files(pod, container, &secret);
    for (key, path) in &config.files {
        assert!(mounted.contains(path), "{key} = {path:?}, but the job mounts only {mounted:?}");
    }
    let grace = at(pod, &["terminationGracePeriodSeconds"]).as_u64().expect("terminationGracePeriodSeconds");
    assert!(Duration::from_secs(grace) > shutdown_grace(&config.table));
}

#[test]
fn service_exposes_the_workers_http_port() {
    let service = k8s("service.yaml");
    let selector = at(&service, &["spec", "selector"]).as_mapping().expect("a selector");
    let deployment = k8s("deployment.yaml");
    let cronjob = k8s("cronjob.yaml");
    let worker_labels = at(&deployment, &["spec", "template", "metadata", "labels"]);
    let cron_labels = at(&cronjob, &["spec", "jobTemplate", "spec", "template", "metadata", "labels"]);
    assert!(selector.iter().all(|(k, v)| worker_labels[k] == *v), "selects the Deployment's pods");
    assert!(!selector.iter().all(|(k, v)| cron_labels[k] == *v), "not the CronJob's");
    let ports = seq(at(&service, &["spec", "ports"]));
    assert!(ports.iter().any(|p| p["port"].as_u64() == Some(8080)), "port 8080 for /metrics");
}

#[test]
fn manifests_run_the_images_command() {
    let cmd = image_cmd();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert_eq!(cmd, ["--config", CONFIG_PATH, "--log-format", "json", "run"]);
    // compose overrides neither entrypoint nor command (checked with its config).
    let deployment = k8s("deployment.yaml");
    assert_eq!(strings(&wearbridge_container(deployment_pod(&deployment))["args"]), cmd, "Deployment");
    let cronjob = k8s("cronjob.yaml");
    let mut once = cmd.clone();
    once.push("--once");
    assert_eq!(strings(&wearbridge_container(cronjob_pod(&cronjob))["args"]), once, "CronJob");
}

#[test]
fn wearbridge_variables_in_manifests_name_known_keys() {
    let known = common::known_config_keys();
    let mut files = vec![
        "docker-compose.yml".to_owned(),
        "Dockerfile".to_owned(),
        "systemd/wearbridge.service".to_owned(),
        "compose/wearbridge.toml".to_owned(),
    ];
    for entry in std::fs::read_dir(Path::new(DEPLOY).join("k8s")).unwrap() {
        files.push(format!("k8s/{}", entry.unwrap().file_name().into_string().unwrap()));
    }
    let mut seen = 0;
    for file in &files {
        for var in wearbridge_vars(&read(file)) {
            let key = env_key(&var);
            assert!(known.contains(&key), "deploy/{file}: {var} names `{key}`, which is not a configuration key");
            seen += 1;
        }
    }
    assert!(seen > 0, "the manifests pass the store URL as WEARBRIDGE__STORE__URL");
}

#[test]
fn dockerfile_builds_in_two_stages_and_runs_unprivileged() {
    let instructions = dockerfile();
    let froms: Vec<usize> = (0..instructions.len()).filter(|&i| instructions[i].0 == "FROM").collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage");
    assert!(instructions[froms[0]].1.contains("rust:"), "builds with the Rust image");
    let last_from = froms[1];
    let user = instructions.iter().rposition(|(k, _)| k == "USER").expect("a USER");
    assert!(user > last_from, "USER is set in the runtime stage");
    let name = instructions[user].1.split(':').next().unwrap_or_default().trim();
    assert!(name != "root" && name != "0" && !name.is_empty(), "runs as {name:?}");
    let (_, healthcheck) = instructions.iter().find(|(k, _)| k == "HEALTHCHECK").expect("a HEALTHCHECK");
    assert!(healthcheck.contains("probe") && healthcheck.contains("/healthz"), "{healthcheck}");
    assert!(instructions.iter().any(|(k, a)| k == "EXPOSE" && a.split_whitespace().any(|p| p == "8080")));
    assert!(instructions.iter().any(|(k, a)| k == "ENTRYPOINT" && a.contains("wearbridge")));
    assert!(
        instructions.iter().any(|(k, a)| k == "RUN"
            && a.contains("cargo build --profile production --locked --no-default-features --bin wearbridge")),
        "builds the locked production binary without the simulator"
    );
    for target in ["tests/benches", "tests/it"] {
        assert!(
            instructions.iter().any(|(k, a)| k == "COPY" && a.starts_with(target)),
            "Cargo.toml names a target under {target}; the build context must hold it"
        );
    }
    for (keyword, args) in &instructions {
        if keyword == "ENV" || keyword == "ARG" {
            let upper = args.to_uppercase();
            for word in ["SECRET", "PASSWORD", "TOKEN"] {
                assert!(!upper.contains(word), "{keyword} {args}: no secrets in the image");
            }
        }
        if keyword == "COPY" {
            // Sources only (flags and the destination dropped): never the whole context
            // (target/, local secrets) nor a secret.
            let parts: Vec<&str> = args.split_whitespace().filter(|p| !p.starts_with("--")).collect();
            for source in &parts[..parts.len().saturating_sub(1)] {
                assert!(*source != "." && *source != "./", "COPY {args}: copies the whole context");
                assert!(!source.contains("secrets") && !source.ends_with(".key"), "COPY {args}: copies a secret");
            }
        }
    }
}

#[test]
fn systemd_unit_runs_the_daemon_and_outwaits_its_shutdown() {
    let entries = unit("systemd/wearbridge.service");
    let service = |key: &str| unit_values(&entries, "Service", key);
    let exec = service("ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    assert!(exec[0].contains("wearbridge") && exec[0].contains(" run"), "{}", exec[0]);
    assert!(exec[0].contains(&format!("--config {CONFIG_PATH}")), "{}", exec[0]);
    assert_eq!(service("Type"), ["exec"]);
    assert_eq!(service("KillSignal"), ["SIGTERM"]);
    assert_eq!(service("Restart"), ["on-failure"]);
    assert_eq!(service("NoNewPrivileges"), ["yes"]);
    assert_eq!(service("ProtectSystem"), ["strict"]);
    let user = service("User");
    assert!(user.len() == 1 && user[0] != "root" && user[0] != "0", "User {user:?}");
    let stop = service("TimeoutStopSec");
    assert_eq!(stop.len(), 1, "TimeoutStopSec");
    let seconds: u64 = stop[0].trim_end_matches('s').parse().expect("TimeoutStopSec in seconds");
    assert!(Duration::from_secs(seconds) > parse_duration(DEFAULT_SHUTDOWN_GRACE).unwrap());
    // Each credential is documented where the configuration must point.
    let text = read("systemd/wearbridge.service");
    let credentials = service("LoadCredential");
    assert!(!credentials.is_empty(), "secrets as systemd credentials");
    for credential in credentials {
        let (name, source) = credential.split_once(':').expect("LoadCredential=NAME:PATH");
        assert!(source.starts_with('/'), "{credential}");
        let path = format!("/run/credentials/wearbridge.service/{name}");
        assert!(text.contains(&path), "the unit tells where {name} lands: {path}");
    }
}

#[test]
fn readme_deployment_sections_name_every_deploy_file() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for section in ["## Running with docker compose", "## Running on Kubernetes", "## systemd"] {
        assert!(readme.contains(section), "README lacks {section:?}");
    }
    let mut files = vec![
        "deploy/docker-compose.yml".to_owned(),
        "deploy/Dockerfile".to_owned(),
        "deploy/compose/wearbridge.toml".to_owned(),
        "deploy/systemd/wearbridge.service".to_owned(),
    ];
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(readme.contains(&name), "README does not mention deploy/k8s/{name}");
        files.push(format!("deploy/k8s/{name}"));
    }
    for f in files {
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(&f).exists(), "{f}");
        let base = f.rsplit('/').next().unwrap();
        assert!(readme.contains(base), "README does not mention {f}");
    }
}
