from marketplace.portal import bp  # noqa: F401


@bp.get("/")
def index():
    return "ok"


@bp.get("/opportunities")
def opportunities():
    return "ok"


@bp.get("/products")
def products():
    return "ok"


@bp.get("/batches")
def batches():
    return "ok"


@bp.get("/search")
def search():
    return "ok"
