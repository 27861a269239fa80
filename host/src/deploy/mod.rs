//! Deploying apps: bundles and where they travel.

pub mod oci;
