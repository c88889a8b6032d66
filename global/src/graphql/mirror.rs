//! GraphQL enums that mirror a service enum variant for variant: services
//! keep plain Rust types, and the API derives its own with conversions both
//! ways, so a variant added on one side and not the other does not compile.

/// `mirror_enum! { /// docs  pub enum Api mirrors service::Type { A, B } }`
/// declares `Api` as an `async_graphql::Enum` (attributes and docs kept, so
/// the schema names and describes it as written) with `From` both ways.
macro_rules! mirror_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident mirrors $svc:ty {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        const _: () = {
            type Service = $svc;

            impl From<Service> for $name {
                fn from(v: Service) -> Self {
                    match v {
                        $( Service::$variant => Self::$variant ),+
                    }
                }
            }

            impl From<$name> for Service {
                fn from(v: $name) -> Self {
                    match v {
                        $( $name::$variant => Service::$variant ),+
                    }
                }
            }
        };
    };
}
