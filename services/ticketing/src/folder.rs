//! The cabinet folders. A ticket's folder is not stored: it follows from its stage
//! ([`Stage::folder`]), and a folder filter is the set of its stages ([`Folder::stages`]).

use pos_proto::v1 as pb;
use strum::VariantArray;

use crate::workflow::Stage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Folder {
    New,
    InWork,
    Returned,
    Processed,
    SentForApproval,
    ReturnedToCoordination,
}

impl Folder {
    /// The name, e.g. `in_work`.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// The stages whose tickets the folder shows.
    pub fn stages(self) -> impl Iterator<Item = Stage> {
        Stage::VARIANTS.iter().copied().filter(move |stage| stage.folder() == self)
    }

    pub fn to_proto(self) -> pb::Folder {
        match self {
            Folder::New => pb::Folder::New,
            Folder::InWork => pb::Folder::InWork,
            Folder::Returned => pb::Folder::Returned,
            Folder::Processed => pb::Folder::Processed,
            Folder::SentForApproval => pb::Folder::SentForApproval,
            Folder::ReturnedToCoordination => pb::Folder::ReturnedToCoordination,
        }
    }

    /// `None` for FOLDER_UNSPECIFIED.
    pub fn from_proto(folder: pb::Folder) -> Option<Folder> {
        match folder {
            pb::Folder::Unspecified => None,
            pb::Folder::New => Some(Folder::New),
            pb::Folder::InWork => Some(Folder::InWork),
            pb::Folder::Returned => Some(Folder::Returned),
            pb::Folder::Processed => Some(Folder::Processed),
            pb::Folder::SentForApproval => Some(Folder::SentForApproval),
            pb::Folder::ReturnedToCoordination => Some(Folder::ReturnedToCoordination),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &folder in Folder::VARIANTS {
            assert_eq!(folder.code().parse::<Folder>(), Ok(folder));
            assert_eq!(Folder::from_proto(folder.to_proto()), Some(folder));
        }
        assert_eq!(Folder::SentForApproval.code(), "sent_for_approval");
    }

    #[test]
    fn every_stage_is_in_exactly_one_folder() {
        let listed: usize = Folder::VARIANTS.iter().map(|f| f.stages().count()).sum();
        assert_eq!(listed, Stage::VARIANTS.len());
        assert!(Folder::VARIANTS.iter().all(|f| f.stages().next().is_some()), "no folder is empty by design");
        assert_eq!(Folder::InWork.stages().count(), 4);
    }
}
