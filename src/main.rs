use clap::Parser;

use glusterfs_csi::app::run;
use glusterfs_csi::cli::Cli;
use glusterfs_csi::reaper;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(reaping) = reaper::needed(&cli.mode) {
        return reaper::supervise(reaping);
    }
    glusterfs_csi::app::init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("glusterfs-csi: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glusterfs-csi: {e}");
            if e.downcast_ref::<glusterfs_csi::UsageError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
