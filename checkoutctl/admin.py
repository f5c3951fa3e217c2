"""`checkoutctl show` and `checkoutctl failed`: the operator's view, through the gateway's
CheckoutAdminService as a trusted caller (a service token signed with SERVICE_TOKEN_SECRET)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2
from rich.console import Console

from checkoutctl import render
from checkoutctl.failures import CtlError, refused
from checkoutctl.mesh import Mesh
from shop.gateway.v1 import admin_service_pb2 as admin_pb
from shop.gateway.v1 import admin_service_pb2_grpc as admin_grpc
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb

#: Page size asked of ListCheckouts (its maximum).
PAGE_SIZE = 200


async def show(mesh: Mesh, checkout_id: str, console: Console) -> gateway_pb.Checkout:
    """Prints a checkout and its saga's steps (attempts, status, timings, last errors)."""
    await mesh.require_serving({"gateway": mesh.targets.gateway})
    admin = admin_grpc.CheckoutAdminServiceStub(mesh.trusted(mesh.targets.gateway))
    try:
        response = await admin.GetCheckoutDetails(admin_pb.GetCheckoutDetailsRequest(checkout_id=checkout_id))
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            raise CtlError(f"no checkout {checkout_id!r} (NOT_FOUND CHECKOUT_NOT_FOUND)") from None
        raise refused("GetCheckoutDetails", error) from None
    resolution = response.resolution if response.HasField("resolution") else None
    console.print(render.checkout_summary(response.checkout, resolution))
    if response.checkout.steps:
        console.print(render.steps_table(response.checkout))
    else:
        console.print("No saga steps yet (the checkout has not been placed).")
    return response.checkout


@dataclass(frozen=True)
class NeedsOperator:
    failed: list[gateway_pb.Checkout]
    stuck: list[gateway_pb.Checkout]
    #: True when `limit` cut a list short.
    truncated: bool


async def list_needing_operator(mesh: Mesh, *, placing_minutes: int, limit: int) -> NeedsOperator:
    await mesh.require_serving({"gateway": mesh.targets.gateway})
    admin = admin_grpc.CheckoutAdminServiceStub(mesh.trusted(mesh.targets.gateway))
    failed, cut_failed = await _list(admin, gateway_pb.CHECKOUT_STATUS_FAILED, None, limit)
    stuck, cut_stuck = await _list(
        admin, gateway_pb.CHECKOUT_STATUS_PLACING, duration_pb2.Duration(seconds=placing_minutes * 60), limit
    )
    return NeedsOperator(failed=failed, stuck=stuck, truncated=cut_failed or cut_stuck)


async def failed(mesh: Mesh, console: Console, *, placing_minutes: int, limit: int) -> NeedsOperator:
    """Prints the checkouts that need an operator: FAILED, and PLACING unchanged for `placing_minutes`."""
    found = await list_needing_operator(mesh, placing_minutes=placing_minutes, limit=limit)
    if not found.failed and not found.stuck:
        console.print(f"No checkout needs an operator: none FAILED, none PLACING for {placing_minutes} min or more.")
        return found
    if found.failed:
        console.print(render.checkouts_table(f"FAILED checkouts ({len(found.failed)})", found.failed))
    if found.stuck:
        title = f"PLACING for {placing_minutes} min or more ({len(found.stuck)})"
        console.print(render.checkouts_table(title, found.stuck))
    if found.truncated:
        console.print(f"[yellow]Only the first {limit} of each are shown (--limit).[/yellow]")
    console.print("Details: checkoutctl show <checkout_id>")
    return found


async def _list(
    admin: admin_grpc.CheckoutAdminServiceAsyncStub,
    status: gateway_pb.CheckoutStatus.ValueType,
    min_unchanged: duration_pb2.Duration | None,
    limit: int,
) -> tuple[list[gateway_pb.Checkout], bool]:
    found: list[gateway_pb.Checkout] = []
    token = ""
    while True:
        request = admin_pb.ListCheckoutsRequest(status=status, page_size=min(PAGE_SIZE, limit), page_token=token)
        if min_unchanged is not None:
            request.min_unchanged.CopyFrom(min_unchanged)
        try:
            page = await admin.ListCheckouts(request)
        except grpc.aio.AioRpcError as error:
            raise refused("ListCheckouts", error) from None
        found.extend(page.checkouts)
        token = page.next_page_token
        if len(found) >= limit:
            return found[:limit], bool(token) or len(found) > limit
        if not token:
            return found, False
