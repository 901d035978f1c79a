//! The Docker Compose deployment's files agree with each other: the
//! container's configuration (deploy/emla.toml) loads, and the paths and
//! port it names are the ones docker-compose.yml mounts, publishes and
//! health-checks. (`docker-compose config -q` in .ci/run checks the compose
//! file itself; `deploy_policy_passes` in policy_check.rs the policy.)

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn container_config_matches_compose_file() {
    let repo = repo();
    let config = emla::config::Config::load(&repo.join("deploy/emla.toml")).unwrap();
    let compose = fs::read_to_string(repo.join("docker-compose.yml")).unwrap();
    let dockerfile = fs::read_to_string(repo.join("Dockerfile")).unwrap();

    // The Dockerfile's default command reads the file compose mounts.
    assert!(dockerfile.contains(r#"CMD ["serve", "--config", "/etc/emla/emla.toml"]"#));
    assert!(compose.contains("- ./deploy/emla.toml:/etc/emla/emla.toml:ro"));

    assert_eq!(config.listen.len(), 1);
    let port = config.listen[0].port();
    assert!(port > 1024, "the non-root user cannot bind port {port}");
    assert!(
        compose.contains(&format!(":{port}\"")),
        "port {port} not published"
    );
    // Both health checks read /readyz of the [metrics] listener.
    let metrics = config.metrics.as_ref().expect("[metrics]").listen.port();
    for (file, text) in [
        ("docker-compose.yml", &compose),
        ("Dockerfile", &dockerfile),
    ] {
        assert!(
            text.contains(&format!("/dev/tcp/127.0.0.1/{metrics}"))
                && text.contains("GET /readyz HTTP/1.1")
                && text.contains("HTTP/1.1 200"),
            "the health check of {file} does not read /readyz on port {metrics}"
        );
    }
    assert!(dockerfile.contains("HEALTHCHECK "));
    assert!(compose.contains(&format!("\"127.0.0.1:{metrics}:{metrics}\"")));

    assert_eq!(config.data_dir, Path::new("/var/lib/emla"));
    assert!(compose.contains("- emla-data:/var/lib/emla"));
    assert!(dockerfile.contains(r#"VOLUME ["/var/lib/emla"]"#));

    assert_eq!(config.policy_dir, Path::new("/etc/emla/policy"));
    assert!(compose.contains("- ./deploy/policy:/etc/emla/policy:ro"));
    // deploy/policy names its certificates as ../certs/..., which is
    // /etc/emla/certs in the container and the deploy/certs link here.
    assert!(compose.contains("- ./certs:/etc/emla/certs:ro"));
    assert_eq!(
        fs::read_link(repo.join("deploy/certs")).unwrap(),
        Path::new("../certs")
    );

    let tls = config.tls.as_ref().expect("[tls]");
    assert!(config.require_tls);
    assert_eq!(tls.cert.parent().unwrap(), Path::new("/etc/emla/tls"));
    assert_eq!(tls.key.parent().unwrap(), Path::new("/etc/emla/tls"));
    assert!(compose.contains("- ./deploy/tls:/etc/emla/tls:ro"));

    // The database is the compose service, and no password is written down:
    // it comes from the PGPASSFILE secret.
    assert_eq!(config.database_url, "postgres://emla@postgres:5432/emla");
    assert!(compose.contains("\n  postgres:\n"));
    assert!(compose.contains("PGPASSFILE: /run/secrets/pgpass"));
    assert!(config.relay.enabled);
    assert_eq!(config.relay.instance_id, "gw1");
}

/// Secrets made at deploy time stay out of git and out of the image's build
/// context.
#[test]
fn secrets_are_ignored() {
    let repo = repo();
    let gitignore = fs::read_to_string(repo.join(".gitignore")).unwrap();
    let dockerignore = fs::read_to_string(repo.join(".dockerignore")).unwrap();
    for dir in ["deploy/secrets", "deploy/tls"] {
        assert!(gitignore.lines().any(|l| l == format!("/{dir}")), "{dir}");
        assert!(
            dockerignore.lines().any(|l| l == format!("{dir}/")),
            "{dir}"
        );
    }
}
