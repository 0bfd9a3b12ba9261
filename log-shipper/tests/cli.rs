//! The binary's command line, as scripts see it.

use std::process::Command;

fn shipper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_log-shipper"))
}

#[test]
fn help_lists_the_flags_and_their_environment_variables() {
    let output = shipper().arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--path <GLOB>",
        "SHIPPER_PATHS",
        "--state-dir",
        "SHIPPER_STATE_DIR",
        "--producer-url",
        "http://127.0.0.1:8081",
        "--start-at",
        "[default: end]",
        "--source",
        "SHIPPER_SOURCE",
        "--config",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn a_start_without_a_path_fails_naming_it() {
    let output = shipper()
        .env_remove("SHIPPER_PATHS")
        .env_remove("SHIPPER_CONFIG")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--path"));
}

#[test]
fn an_unknown_config_key_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shipper.toml");
    std::fs::write(&config, "paths = [\"/var/log/*.log\"]\n").expect("write");
    let output = shipper()
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key `paths`"), "{stderr}");
}
