//! TPM public areas (`trustdeck_tpm::public`): the marshalled `TPM2B_PUBLIC`/`TPMT_PUBLIC` of
//! a node's EK and DevID key. A parsed area keeps its exact bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustdeck_tpm::public::{self, PublicArea};

fuzz_target!(|data: &[u8]| {
    if let Ok(area) = PublicArea::from_tpm2b(data) {
        let _ = area.name();
        assert_eq!(public::tpm2b(&area.tpmt).as_deref(), Some(data));
    }
    if let Ok(area) = PublicArea::from_tpmt(data) {
        assert_eq!(area.tpmt, data);
    }
    let _ = public::tpm2b_contents(data);
});
