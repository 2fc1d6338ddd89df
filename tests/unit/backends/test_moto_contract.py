"""The moto internals the emulator patches or builds on, as they were when the patches were written.

``emulator.aws.backends.moto_transactions`` wraps ``DynamoDBBackend.transact_write_items``
and gives ``Table`` a ``__deepcopy__``; ``emulator.aws.backends.moto_dispatch`` replaces
``moto.backends.list_of_moto_modules``; ``emulator.aws.backends.moto_server`` builds moto's
server from its WSGI pieces. None of that is moto's public API, so a moto release may change
it within the pinned major version: these tests fail then, naming what changed, and the patch
is re-read against the new moto before the recorded shape is updated here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import metadata

import moto.backends
import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

from emulator.aws.backends import moto_dispatch, moto_transactions

#: The functions replaced or wrapped: their whole signature, annotations included, since the
#: replacement is called in their place with the same arguments.
PATCHED: dict[str, tuple[Callable[..., object], str]] = {
    "DynamoDBBackend.transact_write_items": (
        DynamoDBBackend.transact_write_items,
        "(self, transact_items: list[dict[str, typing.Any]]) -> None",
    ),
    "moto.backends.list_of_moto_modules": (
        moto.backends.list_of_moto_modules,
        "() -> collections.abc.Iterable[str]",
    ),
}
#: What the patches and the moto backend call or construct: parameter names and kinds (the
#: annotations of the service-name parameters are a Literal of every moto service, which
#: grows with each release without breaking anything here).
CALLED: dict[str, tuple[Callable[..., object], tuple[str, ...]]] = {
    "DynamoDBBackend.__init__": (DynamoDBBackend.__init__, ("self", "region_name", "account_id")),
    "DynamoType.__init__": (DynamoType.__init__, ("self", "type_as_dict")),
    "DomainDispatcherApplication.__init__": (DomainDispatcherApplication.__init__, ("self", "create_app")),
    "DomainDispatcherApplication.__call__": (
        DomainDispatcherApplication.__call__,
        ("self", "environ", "start_response"),
    ),
    "create_backend_app": (create_backend_app, ("service",)),
    "MotoRequestHandler": (MotoRequestHandler, ("request", "client_address", "server")),
}
#: Attributes of a moto ``Table`` that the light backup reads or replaces.
TABLE_ATTRIBUTES = ("items", "stream_shard", "hash_key_attr", "range_key_attr")


def _original(function: Callable[..., object]) -> Callable[..., object]:
    """The function moto defines, also after the emulator's patch was installed in this process."""
    original = inspect.unwrap(function)  # the patches keep moto's function as __wrapped__
    assert original.__module__.startswith("moto."), f"{function} does not lead back to moto"
    return original


def test_moto_is_within_the_pinned_major_version() -> None:
    # pyproject pins moto below its next major release; the recorded shapes are from 5.x.
    assert metadata.version("moto").split(".")[0] == "5"


@pytest.mark.parametrize("name", sorted(PATCHED))
def test_a_patched_function_keeps_its_signature(name: str) -> None:
    function, recorded = PATCHED[name]
    found = str(inspect.signature(_original(function), follow_wrapped=False))
    assert found == recorded, (
        f"moto {metadata.version('moto')} changed {name}: {found} (patched for {recorded})"
    )


@pytest.mark.parametrize("name", sorted(CALLED))
def test_a_function_the_patches_call_keeps_its_parameters(name: str) -> None:
    function, recorded = CALLED[name]
    parameters = inspect.signature(function).parameters.values()
    found = tuple(parameter.name for parameter in parameters)
    assert found == recorded, f"moto {metadata.version('moto')} changed {name}: {found} (built on {recorded})"


def test_the_dispatcher_looks_the_module_list_up_on_moto_backends_at_each_request() -> None:
    # moto_dispatch replaces the module attribute; a dispatcher that imported the function by
    # name would keep calling the uncached scan.
    source = inspect.getsource(DomainDispatcherApplication.get_backend_for_host)
    assert "backends.list_of_moto_modules()" in source
    moto_dispatch.install()
    first = moto.backends.list_of_moto_modules()
    assert moto.backends.list_of_moto_modules() is first, "the cached scan is not where the dispatcher looks"


def test_a_transaction_backs_tables_up_by_deep_copy_and_a_table_has_no_deepcopy_of_its_own() -> None:
    # moto_transactions makes that copy light through Table.__deepcopy__, which moto does not define.
    source = inspect.getsource(_original(DynamoDBBackend.transact_write_items))
    assert "copy.deepcopy(" in source
    own = vars(Table).get("__deepcopy__")
    assert own is None or own.__module__ == moto_transactions.__name__
    assert all("__deepcopy__" not in vars(base) for base in Table.__mro__[1:])


def test_a_table_has_the_attributes_the_light_backup_copies() -> None:
    table = Table(
        "contract",
        account_id="123456789012",
        region="us-east-1",
        schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    missing = [name for name in TABLE_ATTRIBUTES if name not in vars(table)]
    assert missing == []
    assert (table.hash_key_attr, table.range_key_attr) == ("pk", "sk")
