//! The `dashboard token create|list|revoke` CLI against a temp SQLite file.

use std::process::Command;

fn run(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dashboard"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn token_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dash.sqlite");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dashboard]\naccess_db_path = {:?}\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = run(
        &cfg,
        &[
            "token",
            "create",
            "--application",
            "planning-tool",
            "--purpose",
            "parking study",
            "--role",
            "planner",
            "--finest",
            "15m",
        ],
    );
    assert!(ok, "{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_string();
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with(&format!("cb_{id}_")));
    // Default datasets of a planner: everything but the raw ones.
    assert!(
        out.contains("datasets: parking_aggregates,grid_aggregates,alerts,quality,open_data"),
        "{out}"
    );
    // A planner token for application `a`, purpose `p`, with extra flags.
    let planner = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "create",
            "--application",
            "a",
            "--purpose",
            "p",
            "--role",
            "planner",
        ];
        args.extend_from_slice(extra);
        run(&cfg, &args)
    };
    // A zero-day token is refused, naming the flag (it used to become a 1-day token silently).
    let (ok, _, err) = planner(&["--days", "0"]);
    assert!(!ok);
    assert!(err.contains("--days"), "{err}");
    // A planner cannot be granted raw grid data.
    let (ok, _, err) = planner(&["--datasets", "grid_raw"]);
    assert!(!ok);
    assert!(err.contains("may not be granted dataset grid_raw"), "{err}");
    let (ok, out, _) = run(&cfg, &["token", "list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1);
    assert!(
        out.contains(&id) && out.contains("active") && !out.contains(&token),
        "{out}"
    );
    let (ok, out, _) = run(&cfg, &["token", "revoke", &id]);
    assert!(ok && out.contains("revoked"));
    let (_, out, _) = run(&cfg, &["token", "list"]);
    assert!(out.contains("revoked"));
    let (ok, _, _) = run(&cfg, &["token", "revoke", &id]);
    assert!(!ok, "second revoke fails");
    // The secret is not in the database file.
    let bytes = std::fs::read(&db).unwrap();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
}
