//! The cabinet folders as the ticketing domain knows them.

use pos_proto::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Folder {
    New,
    InWork,
    Returned,
    Processed,
    SentForApproval,
    ReturnedToCoordination,
}

impl Folder {
    pub const ALL: [Folder; 6] = [
        Folder::New,
        Folder::InWork,
        Folder::Returned,
        Folder::Processed,
        Folder::SentForApproval,
        Folder::ReturnedToCoordination,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::New => "new",
            Folder::InWork => "in_work",
            Folder::Returned => "returned",
            Folder::Processed => "processed",
            Folder::SentForApproval => "sent_for_approval",
            Folder::ReturnedToCoordination => "returned_to_coordination",
        }
    }

    pub fn parse(stored: &str) -> Option<Folder> {
        Folder::ALL.into_iter().find(|f| f.as_str() == stored)
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
    fn stored_names_round_trip() {
        for folder in Folder::ALL {
            assert_eq!(Folder::parse(folder.as_str()), Some(folder));
            assert_eq!(Folder::from_proto(folder.to_proto()), Some(folder));
        }
    }
}
