//! Brick trash: where removed brick directories wait to be purged.

use crate::AppResult;
use crate::cli::PurgeBrickTrashArgs;

/// `glusterfs-csi purge-brick-trash <trash>`.
pub fn run_purge(args: PurgeBrickTrashArgs) -> AppResult<()> {
    Err(format!("{}: purging is not implemented yet", args.trash.display()).into())
}
