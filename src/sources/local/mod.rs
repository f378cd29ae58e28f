//! Local capture (issue 21, in progress): Wi-Fi scales that post to wearbridge directly
//! instead of to their vendor's cloud, because their host name points here. This folder
//! holds the protocols, parsed and answered as `shared/reference/local-scales.md` gives
//! them: the Fitbit Aria's binary upload (protocol v3, [`aria`]) and the Withings WBS01's
//! form conversation ([`wbs01`]). The capture listener, scale enrolment and publication
//! through the anonymizer build on these.

pub mod aria;
pub mod wbs01;
