use super::*;

#[test]
fn every_shipped_runbook_loads() {
    let set = shipped().expect("shipped runbooks are valid");
    assert_eq!(set.runbooks.len(), SHIPPED.len());
    for rb in set.iter() {
        assert!(!rb.steps.is_empty(), "{}", rb.name);
        assert_eq!(rb.digest.len(), 64);
    }
}

const GOOD: &str = r#"
name = "t"
title = "T"
summary = "s"
target = "server"
[[inputs]]
name = "server"
kind = "upstream_server"
help = "h"
[[steps]]
id = "prep"
title = "P"
why = "w"
risk = "medium"
confirm = "yes"
timeout = "10s"
action = { call = "prepare", server = "${server}", kind = "x509", save = "new" }
plan = "prepare on ${server}"
verify = [{ check = "authority_is", server = "${server}", kind = "x509", id = "${new}", status = "prepared" }]
"#;

fn err(text: &str) -> LoadError {
    parse("dir/t.toml", "t.toml", text).expect_err("refused")
}

#[test]
fn a_good_file_loads() {
    let rb = parse("dir/t.toml", "t.toml", GOOD).expect("loads");
    assert_eq!(rb.steps[0].action.saves(), vec!["new", "new_sequence"]);
}

#[test]
fn each_error_names_the_file_the_step_and_the_problem() {
    let e = err(&GOOD.replace("${new}\", status", "${newer}\", status"));
    assert_eq!(e.step.as_deref(), Some("prep"));
    assert_eq!(e.problem, Problem::UndefinedVariable("newer".into()));
    let text = e.to_string();
    assert!(text.starts_with("dir/t.toml: step \"prep\": "), "{text}");
    assert!(text.contains("${newer}"), "{text}");

    let e = err(&GOOD.replace("risk = \"medium\"", "risk = \"destructive\""));
    assert_eq!(e.problem, Problem::DestructiveWithoutTypedConfirm);
    let e = err(&GOOD.replace("risk = \"medium\"", "risk = \"low\""));
    assert_eq!(e.problem, Problem::ChangeAtLowRisk);
    let e = err(&GOOD.replace("confirm = \"yes\"\n", ""));
    assert_eq!(e.problem, Problem::ChangeWithoutConfirm);
    let e = err(&GOOD.replace("target = \"server\"", "target = \"nobody\""));
    assert_eq!(
        (e.step, e.problem),
        (None, Problem::UnknownTarget("nobody".into()))
    );
    let e = parse("dir/x.toml", "x.toml", GOOD).expect_err("name");
    assert_eq!(e.problem, Problem::BadName("t".into()));
}

#[test]
fn a_variable_is_read_only_after_the_step_that_saves_it() {
    // The step's own save is not there for its preconditions.
    let e = err(&GOOD.replace(
        "timeout = \"10s\"",
        "timeout = \"10s\"\npre = [{ check = \"keys_answer\", server = \"${new}\" }]",
    ));
    assert_eq!(e.problem, Problem::UndefinedVariable("new".into()));
}

#[test]
fn typos_in_written_values_and_unknown_keys_are_syntax_errors_with_a_line() {
    for bad in [
        GOOD.replace("kind = \"x509\", save", "kind = \"x5o9\", save"),
        GOOD.replace("check = \"authority_is\"", "check = \"authority_iz\""),
        GOOD.replace("timeout = \"10s\"", "timeout = \"ten\""),
        GOOD.replace("why = \"w\"", "why = \"w\"\nwhy_not = 1"),
    ] {
        let e = err(&bad);
        assert!(matches!(e.problem, Problem::Syntax(_)), "{e}");
        assert!(e.to_string().contains("line"), "{e}");
    }
}

#[test]
fn a_directory_overrides_shipped_runbooks_and_reports_every_broken_file() {
    let dir = std::env::temp_dir().join(format!("td-rb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let shipped = SHIPPED
        .iter()
        .find(|(f, _)| *f == "rotate-intermediate.toml")
        .expect("one")
        .1;
    std::fs::write(
        dir.join("rotate-intermediate.toml"),
        shipped.replace("timeout = \"5m\"", "timeout = \"7s\""),
    )
    .expect("write");
    let set = load_dir(&dir).expect("loads");
    let rb = set.get("rotate-intermediate").expect("there");
    assert!(rb.source.ends_with("rotate-intermediate.toml") && !rb.source.starts_with("shipped:"));
    assert!(rb.steps.iter().any(|s| s.timeout.num_seconds() == 7));

    std::fs::write(dir.join("broken.toml"), "name = ").expect("write");
    std::fs::write(
        dir.join("t.toml"),
        GOOD.replace("${new}\", status", "${x}\", status"),
    )
    .expect("write");
    let errs = load_dir(&dir).expect_err("broken");
    assert_eq!(errs.len(), 2, "{errs:?}");
    std::fs::remove_dir_all(&dir).ok();
}
