//! SHIM (replaced by the discovery module)
use std::path::{Path, PathBuf};
#[derive(Debug, Clone)]
pub struct ContainerPath {
    pub pod_uid: String,
    pub container_id: String,
}
impl ContainerPath {
    pub fn short_id(&self) -> &str {
        &self.container_id[..12.min(self.container_id.len())]
    }
}
#[derive(Debug, Clone)]
pub struct DiscoveredContainer {
    pub dir: PathBuf,
    pub rel: String,
    pub path: ContainerPath,
}
#[derive(Debug, Default)]
pub struct Discovery {
    pub containers: Vec<DiscoveredContainer>,
    pub pods: Vec<String>,
    pub errors: Vec<String>,
}
pub fn discover(_root: &Path) -> Discovery {
    Discovery::default()
}
