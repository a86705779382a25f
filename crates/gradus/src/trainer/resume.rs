//! Checkpoints of a training run: what they hold, writing one, and resuming from one so the
//! run ends with the weights an uninterrupted run would have.

use std::path::Path;

use gradus_autograd::{Float, ParamStore};

use super::{TrainError, Trainer, TrainingState};
use crate::checkpoint::{self, CheckpointError, FileKind};

impl<T: Float> Trainer<T> {
    /// The state that a checkpoint holds.
    pub fn training_state(&self) -> TrainingState<T> {
        TrainingState {
            optimizer: self.optimizer.state(),
            ..self.state.clone()
        }
    }

    /// Writes a resumable checkpoint (weights and training state) atomically.
    pub fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        params: &ParamStore<T>,
    ) -> Result<(), TrainError> {
        let bytes = checkpoint::encode(&params.export(), Some(&self.training_state()));
        Ok(checkpoint::write_atomically(path.as_ref(), &bytes)?)
    }

    /// Restores weights and training state from a checkpoint; the next `fit` continues
    /// where it left off and ends with the weights an uninterrupted run would have.
    pub fn resume(
        &mut self,
        path: impl AsRef<Path>,
        params: &mut ParamStore<T>,
    ) -> Result<(), TrainError> {
        let path = path.as_ref();
        let decoded = checkpoint::decode::<T>(&checkpoint::read_gradus(path)?, path, false)?;
        if decoded.header.kind != FileKind::Checkpoint {
            return Err(CheckpointError::Kind {
                path: path.into(),
                expected: FileKind::Checkpoint,
                found: decoded.header.kind,
            }
            .into());
        }
        let state: TrainingState<T> = checkpoint::decode_state(&decoded.state, path)?;
        let mut staged = params.clone();
        staged
            .import(&decoded.tensors)
            .map_err(|diff| CheckpointError::Mismatch {
                path: path.into(),
                diff,
            })?;
        self.optimizer.load_state(state.optimizer.clone())?;
        *params = staged;
        self.state = state;
        self.fitted = false;
        Ok(())
    }
}
