//! Development tools shipped in the `wxgate` binary (`wxgate demo`, `wxgate mock-wechat`) and used
//! by the tests and the fuzz targets: the fake WeChat API, an echo upstream, the demo, and the
//! fuzz targets' entry points. Nothing in the gateway's request path uses them.

pub mod demo;
pub mod echo;
pub mod fuzzing;
pub mod mock_wechat;
