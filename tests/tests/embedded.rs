//! The conformance suite on the embedded (in-process) broker and store.

jobfleet_tests::conformance_suite!(jobfleet_testkit::Embedded);
