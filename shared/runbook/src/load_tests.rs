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
