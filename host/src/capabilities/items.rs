//! `host:api/items`: the guest's view of [`crate::storage::datasets`], limited to granted datasets. Changes
//! made during a triggered execution carry its [`Cause`], so triggers can avoid loops.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::host::api::items::{
    self as wit, Annotation, AnnotationInput, Error, Filter, Geometry as WitGeometry, Host, HostDataset, Item,
    ItemPage, Modality, Point, Rect,
};
use super::{CallParts, Capability, Limiter, Parts, Setup};
use crate::manifest::Grants;
use crate::storage::datasets::{self, Cause, Dataset, DatasetBackend, Geometry, ItemFilter, ItemsError};

/// The datasets a function is granted.
pub struct Items {
    app: String,
    grants: Arc<Grants>,
    backend: Arc<dyn DatasetBackend>,
}

impl Capability for Items {
    fn build(setup: &Setup<'_>) -> Option<Items> {
        (!setup.grants.datasets.is_empty()).then(|| Items {
            app: setup.app.to_string(),
            grants: setup.grants.clone(),
            backend: setup.services.datasets.clone(),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, Items>(linker, |state| state.parts().into())
    }
}

impl HasData for Items {
    type Data<'a> = View<'a>;
}

/// What the `host:api/items` host calls of one call work on.
pub struct View<'a> {
    items: Option<&'a Items>,
    table: &'a mut ResourceTable,
    memory: &'a mut Limiter,
    cause: Option<&'a Cause>,
}

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(Parts { contexts, table, memory, cause }: Parts<'a>) -> View<'a> {
        View { items: contexts.get(), table, memory, cause }
    }
}

type ItemsResult<T> = wasmtime::Result<Result<T, Error>>;

impl From<ItemsError> for Error {
    fn from(e: ItemsError) -> Error {
        match e {
            ItemsError::NoSuchItem(_) => Error::NoSuchItem,
            ItemsError::Invalid(message) => Error::Invalid(message),
            ItemsError::Storage(message) => Error::Other(message),
        }
    }
}

fn wit_item(item: datasets::Item) -> Item {
    Item {
        metadata: item.metadata.to_string(),
        modalities: item.modalities.into_iter().map(|m| Modality { name: m.name, ref_: m.reference }).collect(),
        id: item.id,
        dataset: item.dataset,
        name: item.name,
        dir: item.dir,
        mimetype: item.mimetype,
        size: item.size,
        created_ms: item.created_ms,
        updated_ms: item.updated_ms,
    }
}

fn geometry(g: WitGeometry) -> Geometry {
    match g {
        WitGeometry::Box(b) => Geometry::Box { left: b.left, top: b.top, right: b.right, bottom: b.bottom },
        WitGeometry::Point(p) => Geometry::Point { x: p.x, y: p.y },
        WitGeometry::Polygon(points) => Geometry::Polygon(points.into_iter().map(|p| [p.x, p.y]).collect()),
        WitGeometry::Classification => Geometry::Classification,
    }
}

fn wit_geometry(g: Geometry) -> WitGeometry {
    match g {
        Geometry::Box { left, top, right, bottom } => WitGeometry::Box(Rect { left, top, right, bottom }),
        Geometry::Point { x, y } => WitGeometry::Point(Point { x, y }),
        Geometry::Polygon(points) => WitGeometry::Polygon(points.into_iter().map(|[x, y]| Point { x, y }).collect()),
        Geometry::Classification => WitGeometry::Classification,
    }
}

fn wit_annotation(a: datasets::Annotation) -> Annotation {
    Annotation {
        id: a.id,
        geometry: wit_geometry(a.geometry),
        label: a.label,
        confidence: a.confidence,
        model: a.model,
        created_ms: a.created_ms,
    }
}

impl View<'_> {
    fn dataset(&self, dataset: &Resource<Dataset>) -> wasmtime::Result<Dataset> {
        Ok(self.table.get(dataset)?.clone())
    }

    fn cause(&self) -> Option<Cause> {
        self.cause.cloned()
    }
}

impl Host for View<'_> {
    async fn open(&mut self, name: String) -> ItemsResult<Resource<Dataset>> {
        let Some(items) = self.items.filter(|i| i.grants.dataset(&name)) else {
            return Ok(Err(Error::AccessDenied));
        };
        match Dataset::new(items.backend.as_ref(), &items.app, &name).await {
            Ok(dataset) => Ok(Ok(self.table.push(dataset)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl HostDataset for View<'_> {
    async fn get(&mut self, dataset: Resource<Dataset>, id: String) -> ItemsResult<Item> {
        Ok(self.dataset(&dataset)?.get(&id).await.map(wit_item).map_err(Error::from))
    }

    async fn download(&mut self, dataset: Resource<Dataset>, id: String) -> ItemsResult<Vec<u8>> {
        // Refused before reading when it could not fit in the guest's `memory` limit.
        let dataset = self.dataset(&dataset)?;
        let cap = self.memory.value_budget();
        match dataset.download_at_most(&id, cap).await {
            Ok(Ok(data)) => Ok(Ok(data)),
            Ok(Err(size)) => Err(self.memory.too_big(&format!("downloading item `{id}`"), size)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn upload(
        &mut self,
        dataset: Resource<Dataset>,
        dir: String,
        name: String,
        mimetype: Option<String>,
        data: Vec<u8>,
        metadata: Option<String>,
    ) -> ItemsResult<Item> {
        let (dataset, cause) = (self.dataset(&dataset)?, self.cause());
        let uploaded =
            dataset.upload(&dir, &name, mimetype.as_deref(), data, metadata.as_deref(), cause.as_ref()).await;
        Ok(uploaded.map(wit_item).map_err(Error::from))
    }

    async fn update_metadata(&mut self, dataset: Resource<Dataset>, id: String, metadata: String) -> ItemsResult<Item> {
        let (dataset, cause) = (self.dataset(&dataset)?, self.cause());
        Ok(dataset.update_metadata(&id, &metadata, cause.as_ref()).await.map(wit_item).map_err(Error::from))
    }

    async fn list(
        &mut self,
        dataset: Resource<Dataset>,
        filter: Filter,
        cursor: Option<String>,
        limit: u32,
    ) -> ItemsResult<ItemPage> {
        let mut metadata = Vec::new();
        for (path, json) in filter.metadata {
            match serde_json::from_str(&json) {
                Ok(value) => metadata.push((path, value)),
                Err(e) => return Ok(Err(Error::Invalid(format!("filter metadata `{path}`: not JSON: {e}")))),
            }
        }
        let filter = ItemFilter { dir: filter.dir, mimetype: filter.mimetype, metadata };
        let page = self.dataset(&dataset)?.list(&filter, cursor.as_deref(), limit).await;
        Ok(page
            .map(|p| ItemPage { items: p.items.into_iter().map(wit_item).collect(), cursor: p.cursor })
            .map_err(Error::from))
    }

    async fn delete(&mut self, dataset: Resource<Dataset>, id: String) -> ItemsResult<()> {
        let (dataset, cause) = (self.dataset(&dataset)?, self.cause());
        Ok(dataset.delete(&id, cause.as_ref()).await.map_err(Error::from))
    }

    async fn add_annotations(
        &mut self,
        dataset: Resource<Dataset>,
        id: String,
        annotations: Vec<AnnotationInput>,
    ) -> ItemsResult<Vec<Annotation>> {
        let new = annotations.into_iter().map(|a| (geometry(a.geometry), a.label, a.confidence, a.model)).collect();
        let added = self.dataset(&dataset)?.add_annotations(&id, new).await;
        Ok(added.map(|all| all.into_iter().map(wit_annotation).collect()).map_err(Error::from))
    }

    async fn annotations(&mut self, dataset: Resource<Dataset>, id: String) -> ItemsResult<Vec<Annotation>> {
        let all = self.dataset(&dataset)?.annotations(&id).await;
        Ok(all.map(|all| all.into_iter().map(wit_annotation).collect()).map_err(Error::from))
    }

    async fn delete_annotation(
        &mut self,
        dataset: Resource<Dataset>,
        id: String,
        annotation: String,
    ) -> ItemsResult<()> {
        Ok(self.dataset(&dataset)?.delete_annotation(&id, &annotation).await.map_err(Error::from))
    }

    async fn link_modality(
        &mut self,
        dataset: Resource<Dataset>,
        id: String,
        name: String,
        reference: String,
    ) -> ItemsResult<Item> {
        let (dataset, cause) = (self.dataset(&dataset)?, self.cause());
        Ok(dataset.link_modality(&id, &name, &reference, cause.as_ref()).await.map(wit_item).map_err(Error::from))
    }

    async fn drop(&mut self, dataset: Resource<Dataset>) -> wasmtime::Result<()> {
        self.table.delete(dataset)?;
        Ok(())
    }
}
