"""What each responder of the library's route tables does, for its OpenAPI document: summary,
parameters, body and answers, over the schemas of ``schemas.py``. Authentication is not repeated
here (the generator reads each resource's ``auth``), nor the path parameters (the templates').
``fragment`` is the document's library part; a responder without an entry here fails it."""

from __future__ import annotations

from ...portal import api as portal_api
from ...portal import web as portal_web
from ...routes import library as public
from . import admin, media, v1, v2
from . import schemas as S
from .openapi import BINARY, BUSY, SLOW, SMALL_BODY, Dialect, Generator, Op, Reply, json

_COMMON = {400: "malformed input, with the reason", 408: SLOW, 413: SMALL_BODY, 429: BUSY}

V1 = Dialect("the /api/v1 API", "Uploads (streamed or presigned), metadata, variants, crops and jobs of an "
             "organization's media (`X-API-Key` or `Authorization: Bearer`)",
             {**_COMMON, 401: "missing or invalid API key", 403: "orgSlug is not the key's",
              404: "unknown id, or another organization's", 415: "type not allowed", 416: "unsatisfiable range"})
PUBLIC_URLS = Dialect("the library's public URLs", "A public media's bytes, served by the origin with its "
                      "immutable caching (imgix's parameters transform them); plain-text errors",
                      {400: "bad parameter (text)", 404: "no such public object (private looks the same)"})
MEDIA = Dialect("the presigned /media API", "A record and a presigned upload URL for an end user "
                "(`X-User-Id`), readable by that user only",
                {**_COMMON, 401: "missing or invalid API key", 404: "unknown, or not the uploader's",
                 413: "a declared size over the limit", 415: "content type not allowed"})
_V2_ERRORS = {**_COMMON, 401: "missing or invalid key/token",
              404: "no such thing for this client/user (also another client's)",
              415: "the bytes are not an allowed image type"}
V2_IMAGES = Dialect("/v2 images", "The /v2 image service's images: tags, privacy, share links (`X-API-Key`, the "
                    "end user in `X-User-Id`)", _V2_ERRORS)
V2_AVATARS = Dialect("/v2 avatars", "One avatar per end user", _V2_ERRORS)
V2_ALBUMS = Dialect("/v2 albums", "Albums of an end user, public or shared by access tokens", _V2_ERRORS)
V2_CLIENT = Dialect("/v2 client", "The API key's client: health and statistics", _V2_ERRORS)
ADMIN = Dialect("/v2 admin API", "Every client's images, albums and avatars, for an admin "
                "(`Authorization: Bearer` access token)", {**_V2_ERRORS, 404: "no such thing"})
PORTAL = Dialect("admin portal", "The admin portal at MEDIAPROXY_PORTAL_PATH (docs/portal.md) and the admin "
                 "API's verbs it adds", {**_V2_ERRORS, 404: "no such thing"})
DIALECTS = [V1, PUBLIC_URLS, MEDIA, V2_IMAGES, V2_AVATARS, V2_ALBUMS, V2_CLIENT, ADMIN, PORTAL]

IMAGE_BYTES = Reply("the image (or, when it may not be seen or does not exist, the same fallback WebP with "
                    "Cache-Control: private, no-store)", {"image/*": BINARY})
DONE = Reply("done")
STORED_BYTES = {200: Reply("the bytes", {"application/octet-stream": BINARY}), 206: Reply("a range"),
                304: Reply("not modified")}
OCTETS = {"type": "string", "format": "binary"}

O = Op  # noqa: E741 - the table below reads better short
OPERATIONS: dict[tuple[type, str], Op] = {
    # -- the /api/v1 API --------------------------------------------------------------------------
    (v1.Health, "get"): O("Health check", "libraryHealth", {
        200: json(S.Health, "up"), 503: json(S.HealthDown, "database unreachable")}),
    (v1.Upload, "post"): O(
        "Upload a file (streamed to storage)", "v1Upload",
        {201: json(S.Media, "the media"), 202: json(S.Accepted, "queued (async=true)")},
        (400, 403, 408, (413, "over MEDIAPROXY_UPLOAD_MAX_BYTES, a form of more than 128 parts, or (with "
                         "generateVariants) an image over the pixel limit: nothing is kept"),
         (415, "type not allowed (by the bytes)"), 429),
        body=S.UploadForm, body_type="multipart/form-data"),
    (v1.Presigned, "post"): O(
        "Get a presigned upload URL", "v1PresignUpload", {201: json(S.PresignedUpload, "where to PUT")},
        (400, 403, (413, "size over the limit, or " + SMALL_BODY), 415),
        description="The body may also be a urlencoded form, or the query string.", body=S.PresignRequest),
    (v1.ListMedia, "get"): O("List media (paginated)", "v1List", {200: json(S.MediaList, "a page")}, (400,),
                             query=S.ListQuery),
    (v1.Batch, "post"): O("Get up to 100 media by id", "v1Batch", {200: json(S.Batch, "found, in order")},
                          (400, 413), body=S.BatchRequest),
    (v1.Crop, "post"): O(
        "Crop, rotate, scale or re-encode (a new version)", "v1Crop",
        {200: json(S.Media, "the media on its new version"), 202: json(S.Accepted, "queued (async=true)")},
        (400, 404, (409, "the media changed while the crop ran (a concurrent crop or replace): ask again"),
         (413, "an image over the pixel limit, or " + SMALL_BODY)),
        description="The media by `id`, or by `objectKey` (and `bucketName`).", body=S.CropRequest),
    (v1.Regenerate, "post"): O("Regenerate variants (a job)", "v1Regenerate", {202: json(S.Accepted, "queued")},
                               (400, 404, 413), body=S.ByKey),
    (v1.VariantsInfo, "get"): O("Variants of an original", "v1VariantsInfo", {200: json(S.VariantsInfo, "variants")},
                                (400, 404), query=S.KeyQuery),
    (v1.VariantRedirect, "get"): O(
        "Redirect to a variant's URL", "v1VariantRedirect",
        {302: Reply("to the public URL (presigned when private)", headers={"Location": "the variant's URL"})},
        (404,), path={"bucket": "the library's bucket", "name": "the variant's name (thumbnail, small, medium, "
                      "large, original_webp)", "folder": "the version's folder (may contain /)"}),
    (v1.Presign, "get"): O("Presigned download URL", "v1Presign", {200: json(S.PresignedDownload, "the URL")},
                           (400, 404), query=S.PresignQuery),
    (v1.Download, "get"): O("Download (streamed, Range)", "v1Download", STORED_BYTES, (404, 416),
                            path={"bucket": "the library's bucket", "key": "the object's key (may contain /)"}),
    (v1.Signed, "get"): O("Presigned download of the local backend", "v1SignedGet",
                          {200: Reply("the bytes", {"application/octet-stream": BINARY}), 206: Reply("a range"),
                           304: Reply("not modified")},
                          ((403, "tampered or expired"), 404, 416), query=S.SignedQuery,
                          path={"key": "the object's key (may contain /)"}),
    (v1.Signed, "put"): O(
        "Presigned upload of the local backend", "v1SignedPut", {200: json(S.Stored, "stored")},
        ((400, "a body that ends before its Content-Length, or a Content-Disposition other than inline/attachment "
               "in printable ASCII (nothing is kept)"),
         (403, "tampered, expired or spent, or a Content-Length other than the signed size"), 404,
         (409, "another PUT on this URL is arriving (one at a time; a failed one gives the URL back)"), 408,
         (413, "too large"), 415, 429),
        query=S.SignedPutQuery, body=OCTETS, body_type="application/octet-stream",
        path={"key": "the object's key (may contain /)"}, headers=(("Content-Disposition", "kept with the object"),)),
    (v1.JobStatus, "get"): O("Job status", "v1Job", {200: json(S.Job, "the job")}, (404,)),
    (v1.One, "get"): O("Get a media object", "v1Get", {200: json(S.Media, "the media")}, (404,)),
    (v1.One, "patch"): O("Update metadata (only the fields given)", "v1Patch", {200: json(S.Media, "the media")},
                         ((400, "malformed input, or a field that cannot change"), 404, 413), body=S.MediaPatch),
    (v1.One, "delete"): O("Delete a media object and its files", "v1DeleteById", {200: json(S.Deleted, "deleted")},
                          (404,)),
    (v1.Variants, "get"): O("Variants of a media object", "v1Variants", {200: json(S.MediaVariants, "variants")},
                            (404,)),
    (v1.Delete, "delete"): O("Delete by id, or by objectKey and bucketName", "v1Delete",
                             {200: json(S.Deleted, "deleted")}, (400, 404, 413),
                             description="In the query string, or a JSON body.", query=S.ByKey),
    # -- the library's public URLs ------------------------------------------------------------------
    (public.PublicObject, "get"): O(
        "A public media's original or variant (immutable)", "libraryPublic",
        {200: Reply("the bytes, or the transformed image", {"application/octet-stream": BINARY}),
         206: Reply("a range"), 304: Reply("not modified")},
        (400, 404, (413, "over the pixel limit"), (416, "unsatisfiable range")),
        query=S.PublicQuery, path={"key": "an original's or a variant's key (may contain /)"}),
    (public.ContentAddressed, "get"): O(
        "Content-addressed URI of public bytes (immutable)", "libraryCanonical",
        {200: Reply("the bytes", {"application/octet-stream": BINARY}), 206: Reply("a range"),
         304: Reply("not modified")},
        (400, (404, "no public media has these bytes"), (413, "over the pixel limit"), (416, "unsatisfiable range")),
        query=S.PublicQuery, path={"sha": "the bytes' SHA-256, lowercase hex"}),
    # -- the presigned /media API -------------------------------------------------------------------
    (media.MediaCollection, "post"): O(
        "Create a media object (presigned upload)", "mediaCreate",
        {201: json(S.CreatedMedia, "where to PUT the bytes")},
        (400, 413, 415), body=S.CreateMediaRequest),
    (media.MediaItem, "get"): O("Get a media object (uploader only)", "mediaGet",
                                {200: json(S.MediaObject, "the media")}, (404,)),
}
_V2 = {
    (v2.Images, "post"): O(
        "Upload an image", "v2ImageUpload", {201: json(S.Image, "created")},
        (400, (404, "albumId: no such album of this user"), 408,
         (413, "upload over the limit; nothing stored; or a form of more than 128 parts"), 415, 429),
        body=S.ImageForm, body_type="multipart/form-data", user="optional"),
    (v2.Images, "get"): O("List images (filter by tag, album, privacy, user, date)", "v2ImageList",
                          {200: json(S.ImageList, "a page")}, (400, 404), query=S.ImagesQuery, user="optional"),
    (v2.Shared, "get"): O("Serve an image by its share link", "v2ImageShared", {200: IMAGE_BYTES, 304: Reply(
        "not modified")}, (400,), query=S.ServeQuery),
    (v2.Image, "get"): O(
        "Serve an image (WebP by default, or resized); ?info=true: its JSON", "v2ImageGet",
        {200: Reply(IMAGE_BYTES.description + "; with ?info=true, its JSON (needs the key)",
                    {"image/*": BINARY, "application/json": S.Image}), 304: Reply("not modified")},
        (400, (401, "an invalid key (or ?info=true without one)"), (404, "?info=true: no such image of this client")),
        query=S.ImageQuery, user="optional", key_optional=True),
    (v2.Image, "patch"): O("Update tags, description, privacy (the owner)", "v2ImagePatch",
                           {200: json(S.Image, "the image")}, (400, 404, 413), body=S.ImagePatch, user="optional"),
    (v2.Image, "delete"): O("Delete an image (the owner)", "v2ImageDelete", {204: DONE}, (400, 404), user="optional"),
    (v2.Share, "post"): O("Create a share link (expiring)", "v2ImageShare", {201: json(S.Share, "created")},
                          (400, 404, 413), body=S.ShareRequest, user="optional"),
    (v2.ShareRevoke, "delete"): O("Revoke a share link", "v2ImageShareRevoke", {204: DONE}, (400, 404),
                                  user="optional"),
    (v2.Avatars, "post"): O("Upload or replace a user's avatar", "v2AvatarUpload", {201: json(S.Avatar, "created")},
                            (400, 408, (413, "upload over the limit; nothing stored"), 415, 429),
                            body=S.AvatarForm, body_type="multipart/form-data", user="optional"),
    (v2.AvatarOne, "get"): O(
        "A user's avatar; ?info=true: its JSON", "v2AvatarGet",
        {200: Reply("the avatar (Cache-Control: private, max-age=60, must-revalidate, and an ETag); with "
                    "?info=true, its JSON", {"image/*": BINARY, "application/json": S.Avatar},
                    headers={"Content-Location": "the avatar's immutable public URL"}),
         304: Reply("not modified")}, (400, 404), query=S.AvatarQuery),
    (v2.AvatarOne, "delete"): O("Delete a user's avatar", "v2AvatarDelete", {204: DONE}, (400, 404)),
    (v2.Albums, "post"): O("Create an album", "v2AlbumCreate", {201: json(S.Album, "created")}, (400, 413),
                           body=S.AlbumInput),
    (v2.Albums, "get"): O("List the user's and public albums", "v2AlbumList", {200: json(S.AlbumList, "a page")},
                          (400,), query=S.PageQuery),
    (v2.AlbumOne, "get"): O("Get an album (owner, public, or ?token=)", "v2AlbumGet", {200: json(S.Album, "the album")},
                            (400, 404), query=S.TokenQuery),
    (v2.AlbumOne, "patch"): O("Update an album (owner)", "v2AlbumPatch", {200: json(S.Album, "the album")},
                              (400, 404, 413), body=S.AlbumInput, query=S.TokenQuery),
    (v2.AlbumOne, "delete"): O("Delete an album (its images stay)", "v2AlbumDelete", {204: DONE}, (400, 404),
                               query=S.TokenQuery),
    (v2.AlbumImages, "get"): O("List an album's images", "v2AlbumImages", {200: json(S.ImageList, "a page")},
                               (400, 404), query=S.AlbumImagesQuery),
    (v2.AlbumImages, "post"): O("Add images (the owner's, or public ones)", "v2AlbumAdd",
                                {200: json(S.AlbumAdded, "added")}, (400, 404, 413), body=S.ImageIds,
                                query=S.TokenQuery),
    (v2.AlbumImages, "delete"): O("Remove images", "v2AlbumRemove", {200: json(S.AlbumRemoved, "removed")},
                                  (400, 404, 413), body=S.ImageIds, query=S.TokenQuery),
    (v2.AlbumTokens, "post"): O("Create an access token", "v2AlbumToken", {201: json(S.AlbumShare, "created")},
                                (400, 404, 413), body=S.ShareRequest, query=S.TokenQuery),
    (v2.AlbumToken, "delete"): O("Revoke an access token", "v2AlbumTokenRevoke", {204: DONE}, (400, 404),
                                 query=S.TokenQuery),
    (v2.Status, "get"): O("Health and the key's client", "v2Status", {200: json(S.Status, "up")}),
    (v2.ClientStats, "get"): O("The client's statistics", "v2ClientStats",
                               {200: json(S.ClientStats, "its statistics")}),
}
_ADMIN = {
    (admin.Login, "post"): O("Log in: an access JWT (15 min) and a refresh token", "adminLogin",
                             {200: json(S.LoginTokens, "signed in")},
                             (400, (401, "wrong email or password"), 413,
                              (429, "too many failed logins; see Retry-After")), body=S.LoginRequest),
    (admin.Refresh, "post"): O("Rotate the refresh token (a reused one revokes its family)", "adminRefresh",
                               {200: json(S.Tokens, "new tokens")},
                               (400, (401, "an invalid, expired or reused refresh token"), 413),
                               body=S.RefreshRequest),
    (admin.Logout, "post"): O("Log out (revokes the refresh token's family; without one, every session)",
                              "adminLogout", {204: DONE}, (400, 413), body=S.LogoutRequest),
    (admin.Me, "get"): O("Own profile", "adminMe", {200: json(S.Admin, "the admin")}),
    (admin.Me, "patch"): O("Update own profile", "adminMePatch", {200: json(S.Admin, "the admin")}, (400, 413),
                           body=S.MePatch),
    (admin.ChangePassword, "post"): O("Change password (ends every session: new tokens)", "adminChangePassword",
                                      {200: json(S.Tokens, "new tokens")}, (400, 413), body=S.PasswordChange),
    (admin.Stats, "get"): O("Global and per-client statistics", "adminStats", {200: json(S.AdminStats, "statistics")}),
    (admin.Clients, "get"): O("List clients", "adminClients", {200: json(S.ClientList, "a page")}, (400,),
                              query=S.ClientsQuery),
    (admin.ClientOne, "get"): O("Get a client with its statistics", "adminClient", {200: json(S.Client, "the client")},
                                (404,)),
    (admin.ClientOne, "patch"): O("Update a client's name", "adminClientPatch", {200: json(S.Client, "the client")},
                                  (400, 404, 413), body=S.ClientPatch),
    (admin.AdminImages, "post"): O(
        "Upload on behalf of a client", "adminImageUpload", {201: json(S.AdminImage, "created")},
        (400, (404, "no such client"), 408, (413, "upload over the limit; nothing stored"), 415, 429),
        description="`clientId` is in the query: the upload must know its client before the first byte is stored.",
        query=S.AdminUploadQuery, body=S.AdminImageForm, body_type="multipart/form-data"),
    (admin.AdminImages, "get"): O("List images across clients", "adminImages", {200: json(S.AdminImageList, "a page")},
                                  (400,), query=S.AdminImagesQuery),
    (admin.AdminTags, "get"): O("Tags with counts", "adminTags", {200: json(S.TagCounts, "the tags")}, (400,),
                                query=S.TagsQuery),
    (admin.AdminImage, "get"): O("Get an image", "adminImage", {200: json(S.AdminImage, "the image")}, (404,)),
    (admin.AdminImage, "patch"): O("Update an image", "adminImagePatch", {200: json(S.AdminImage, "the image")},
                                   (400, 404, 413), body=S.ImagePatch),
    (admin.AdminImage, "delete"): O("Delete an image", "adminImageDelete", {204: DONE}, (404,)),
    (admin.AdminAvatars, "get"): O("List avatars", "adminAvatars", {200: json(S.AdminAvatarList, "a page")}, (400,),
                                   query=S.ClientPageQuery),
    (admin.AdminAvatar, "get"): O("Get an avatar", "adminAvatar", {200: json(S.AdminAvatar, "the avatar")}, (404,)),
    (admin.AdminAvatar, "delete"): O("Delete an avatar", "adminAvatarDelete", {204: DONE}, (404,)),
    (admin.AdminAlbums, "get"): O("List albums", "adminAlbums", {200: json(S.AdminAlbumList, "a page")}, (400,),
                                  query=S.ClientPageQuery),
    (admin.AdminAlbum, "get"): O("Get an album", "adminAlbum", {200: json(S.AdminAlbum, "the album")}, (404,)),
    (admin.AdminAlbum, "patch"): O("Update an album", "adminAlbumPatch", {200: json(S.AdminAlbum, "the album")},
                                   (400, 404, 413), body=S.AlbumInput),
    (admin.AdminAlbum, "delete"): O("Delete an album", "adminAlbumDelete", {204: DONE}, (404,)),
}
_PORTAL = {
    (portal_web.Index, "get"): O("The admin portal (redirects to the path with a slash)", "portalRedirect",
                                 {301: Reply("to MEDIAPROXY_PORTAL_PATH/")}),
    (portal_web._Slash, "get"): O("The admin portal's page", "portalIndex",
                                  {200: Reply("the page", {"text/html": {"type": "string"}}),
                                   304: Reply("not modified")}),
    (portal_web.Static, "get"): O("The portal's modules and style sheet", "portalStatic",
                                  {200: Reply("the file"), 304: Reply("not modified")}, ((404, "no such file"),)),
    (portal_web.SessionLogin, "post"): O(
        "Sign in to the portal: the admin login, its refresh token set as an HttpOnly cookie", "portalSignIn",
        {200: json(S.Session, "the access token (no refresh token: it is the cookie) and csrfToken")},
        (400, (401, "wrong email or password"), (403, "not from the portal's own origin"), 413,
         (429, "too many failed logins; see Retry-After")), body=S.SessionRequest),
    (portal_web.SessionRefresh, "post"): O(
        "A new access token for the refresh cookie (rotated)", "portalRefresh",
        {200: json(S.Session, "a new access token and csrfToken")},
        ((401, "not signed in"), (403, "not from the portal's own origin, or a missing or wrong X-CSRF-Token")),
        headers=(("X-CSRF-Token", "the session's csrfToken"),)),
    (portal_web.SessionLogout, "post"): O(
        "End the cookie's session, or every session of its admin", "portalSignOut",
        {204: Reply("done; the cookies are cleared")},
        (400, (403, "not from the portal's own origin, or a missing or wrong X-CSRF-Token"), 413),
        body=S.SessionLogoutRequest, headers=(("X-CSRF-Token", "the session's csrfToken"),)),
    (portal_web.SignedMedia, "get"): O(
        "An image through a signed portal URL (GET {prefix}/admin/images/signed)", "portalMedia",
        {200: Reply("the image, WebP", {"image/webp": BINARY}), 304: Reply("not modified")},
        ((400, "malformed input"), (403, "a wrong or expired signature"), (404, "no such image"),
         (413, "over the pixel limit")), query=S.SignedMediaQuery),
    (portal_api.Uploads, "get"): O("Uploads per day (UTC) of the last days", "adminUploadsPerDay",
                                   {200: json(S.UploadsPerDay, "a day each")}, (400,), query=S.UploadsQuery),
    (portal_api.ClientKeys, "get"): O("A client's API keys (prefix, name, state; never a secret)", "adminClientKeys",
                                      {200: json(S.KeyList, "the keys")}, (404,)),
    (portal_api.SignedUrls, "get"): O("Short-lived signed URLs of images for <img> (private ones too)",
                                      "adminSignedUrls", {200: json(S.SignedUrls, "the URLs")}, (400,),
                                      query=S.SignedUrlsQuery),
    (portal_api.Thumbnails, "get"): O(
        "A page's thumbnails in one answer (private images and avatars too)", "adminThumbnails",
        {200: Reply("one multipart/form-data part per id that is a ready image or avatar, named by its id, in "
                    "the order asked: the image at w × h as WebP, through the origin's pipeline and result cache; "
                    "other ids are left out", {"multipart/form-data": {
                        "type": "object", "additionalProperties": OCTETS}})},
        (400,), query=S.ThumbnailsQuery),
    (portal_api.ImageShares, "get"): O("An image's share links (never the token)", "adminImageShares",
                                       {200: json(S.TokenList, "newest first")}, (404,)),
    (portal_api.ImageShares, "post"): O("Create a share link of an image (the token is shown once)",
                                        "adminImageShareCreate", {201: json(S.ImageShareCreated, "the link")},
                                        (400, 404, 413), body=S.ShareRequest),
    (portal_api.ImageShare, "delete"): O("Revoke a share link by its id", "adminImageShareRevoke",
                                         {204: Reply("revoked")}, (404,)),
    (portal_api.AlbumImages, "get"): O("An album's images", "adminAlbumImages",
                                       {200: json(S.AdminImageList, "a page")}, (400, 404), query=S.PageQuery),
    (portal_api.AlbumTokens, "get"): O("An album's access tokens (never the token)", "adminAlbumTokens",
                                       {200: json(S.TokenList, "newest first")}, (404,)),
    (portal_api.AlbumTokens, "post"): O("Create an album access token (shown once)", "adminAlbumTokenCreate",
                                        {201: json(S.AlbumTokenCreated, "the token")}, (400, 404, 413),
                                        body=S.ShareRequest),
    (portal_api.AlbumToken, "delete"): O("Revoke an album access token by its id", "adminAlbumTokenRevoke",
                                         {204: Reply("revoked")}, (404,)),
}
OPERATIONS.update(_V2)
OPERATIONS.update(_ADMIN)
OPERATIONS.update(_PORTAL)

_V2_TAGS = {v2.Avatars: V2_AVATARS, v2.AvatarOne: V2_AVATARS, v2.Albums: V2_ALBUMS, v2.AlbumOne: V2_ALBUMS,
            v2.AlbumImages: V2_ALBUMS, v2.AlbumTokens: V2_ALBUMS, v2.AlbumToken: V2_ALBUMS, v2.Status: V2_CLIENT,
            v2.ClientStats: V2_CLIENT}


def route_table(prefix: str, portal: str) -> list[tuple[str, type, Dialect]]:
    """Every library route as Falcon serves it (``library/build.add_routes``), with its dialect."""
    return ([(t, r, V1) for t, r in v1.ROUTES]
            + [(t, r, MEDIA) for t, r in media.ROUTES]
            + [(prefix + t, r, _V2_TAGS.get(r, V2_IMAGES)) for t, r in v2.ROUTES]
            + [(f"{prefix}/admin{t}", r, ADMIN) for t, r in admin.ROUTES]
            + [(f"{prefix}/admin{t}", r, PORTAL) for t, r in portal_api.ROUTES]
            + [(portal + t, r, PORTAL) for t, r in portal_web.ROUTES]
            + [(t, r, PUBLIC_URLS) for t, r in public.ROUTES])


def fragment(prefix: str = "/v2", portal: str = "/admin") -> dict:
    """The library's part of the OpenAPI document (``x-modes``, paths, components, tags)."""
    doc = Generator().fragment(route_table(prefix, portal), OPERATIONS, DIALECTS, prefix)
    for item in doc["paths"].values():  # the portal's summary names the admin API's path
        for op in item.values():
            if isinstance(op, dict) and "{prefix}" in op.get("summary", ""):
                op["summary"] = op["summary"].replace("{prefix}", prefix)
    return doc
