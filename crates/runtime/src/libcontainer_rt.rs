//! (being written)
use std::path::Path;
use crate::*;
pub struct Libcontainer;
impl Libcontainer {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(_: &Path) -> Self { Self }
}
impl Runtime for Libcontainer {
    fn create(&self, _: &str, _: &Path, _: Stdio) -> Result<i32, RuntimeError> { unimplemented_rt() }
    fn start(&self, _: &str) -> Result<(), RuntimeError> { unimplemented_rt() }
    fn exec(&self, _: &str, _: &oci_spec::runtime::Process, _: Stdio) -> Result<i32, RuntimeError> { unimplemented_rt() }
    fn kill(&self, _: &str, _: i32, _: bool) -> Result<(), RuntimeError> { unimplemented_rt() }
    fn pause(&self, _: &str) -> Result<(), RuntimeError> { unimplemented_rt() }
    fn resume(&self, _: &str) -> Result<(), RuntimeError> { unimplemented_rt() }
    fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> { unimplemented_rt() }
    fn state(&self, _: &str) -> Result<(Status, Option<i32>), RuntimeError> { unimplemented_rt() }
}
fn unimplemented_rt<T>() -> Result<T, RuntimeError> { Err(std::io::Error::other("not yet").into()) }
