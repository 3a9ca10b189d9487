from kubetune.data.v1 import data_pb2
from tests.data.conftest import upload_folder


async def test_seed_from_s3_and_local(data, s3, bucket, seed_dir):
    uri = upload_folder(s3, bucket, "seed", seed_dir)
    r = await data.stub.RegisterDataset(data_pb2.RegisterDatasetRequest(name="seed", uri=uri))
    print(r)
    assert r.created
    r2 = await data.stub.RegisterDataset(data_pb2.RegisterDatasetRequest(name="seed", uri=str(seed_dir)))
    assert not r2.created and r2.version.version == r.version.version
