"""What each MovieLens dataset is: its files, their formats and the checksums they must match.

The SHA-256 values are those of GroupLens' own files (verified copies listed in the mirror's
SHA256SUMS). Full ML-1M ``ratings.dat`` is larger than any verified copy we hold, so it is checked
against its git blob id, the one fact about it that is known for certain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"


@dataclass(frozen=True)
class RatingsSource:
    """One way to obtain a dataset's ratings: a file name and how to check it."""

    filename: str
    sha256: str | None = None
    git_blob: str | None = None
    xz_name: str | None = None  # mirrors may hold it xz-compressed under this name
    subset: str | None = None  # set when the file holds only part of the dataset


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    sep: str
    encoding: str
    ratings: tuple[RatingsSource, ...]  # in order of preference
    # Other files and their SHA-256; all are required.
    files: dict[str, str] = field(default_factory=dict)
    splits: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return GROUPLENS_URL.format(name=self.name)


ML_100K = DatasetSpec(
    name="ml-100k",
    sep="\t",
    encoding="latin-1",
    ratings=(
        RatingsSource(
            "u.data", sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
        ),
    ),
    files={
        "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
        "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
        "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
        "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
        "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
        "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
        "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
        "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
        "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
        "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
        "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
        "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
        "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
        "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
        "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
        "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
    },
    splits={s: (f"{s}.base", f"{s}.test") for s in ("u1", "u2", "u3", "u4", "u5", "ua", "ub")},
)

ML_1M = DatasetSpec(
    name="ml-1m",
    sep="::",
    encoding="latin-1",
    ratings=(
        RatingsSource("ratings.dat", git_blob="77a7c4b150f588c23bb9e1f068aa996c0b413695"),
        RatingsSource(
            "ratings_partial_users0001-2999.dat",
            sha256="1273c4edfe3c0ff9e3a0a0d55819faeb947da0ad7df3927333b51ebefbeedc3d",
            xz_name="ratings_partial_users0001-2999.dat.xz",
            subset="ml-1m ratings of users 1-2999 only (487,650 of 1,000,209)",
        ),
    ),
    files={
        "README": "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133",
        "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
        "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
    },
)

SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (ML_100K, ML_1M)}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}") from None
